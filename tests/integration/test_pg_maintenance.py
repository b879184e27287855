"""pg_maintenance: engine and module against a real throwaway PostgreSQL 15.

No mocks and no timing assertions: lock conflicts are produced by real
sessions holding real locks, and the checks look at outcomes (results,
pg_locks, pg_index, pg_stat_user_tables).
"""

import threading
import time

import psycopg2
import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres
from ansible_collections.cerniq.ops.plugins.module_utils.pg_maintenance import (
    MaintenanceError,
    MaintenanceRunner,
    build_sql,
    cc_kind,
    concurrent_reindex_broken,
    normalize_task,
    run_maintenance,
)
from cerniq_testkit.ansible_run import run_module


def _connect(params, app=None, autocommit=True):
    conn = psycopg2.connect(host=params['login_host'], port=params['login_port'], dbname=params['login_db'],
                            user=params['login_user'], password=params['login_password'],
                            application_name=app or 'pytest-helper')
    conn.autocommit = autocommit
    return conn


def _q(conn, sql, args=None):
    cur = conn.cursor()
    cur.execute(sql, args)
    rows = cur.fetchall() if cur.description else None
    cur.close()
    return rows


def _wait_for(predicate, what, limit=60.0):
    """Readiness wait (not an assertion on time): poll until predicate() is true."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError('gave up waiting for %s' % what)


def _warnings(result):
    """Warning texts of a module result (ansible-core 2.19 returns structured summaries)."""
    out = []
    for item in result.get('warnings') or []:
        out.append(item['event']['msg'] if isinstance(item, dict) else item)
    return out


def _last_vacuum(conn, table):
    return _q(conn, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = %s", (table,))[0][0]


def _invalid(conn):
    return sorted(r[0] for r in _q(conn, """SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                            WHERE NOT i.indisvalid"""))


@pytest.fixture
def tables(pg_conn):
    _q(pg_conn, """
        CREATE TABLE items (id int PRIMARY KEY, v int, note text) WITH (autovacuum_enabled = false);
        CREATE INDEX items_v ON items (v);
        INSERT INTO items SELECT g, g % 50, 'n' || g FROM generate_series(1, 2000) g;
        DELETE FROM items WHERE id % 3 = 0;
        CREATE TABLE other (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
        INSERT INTO other SELECT generate_series(1, 100);
    """)
    return pg_conn


# ----------------------------------------------------------------------------- pure helpers

def test_sql_is_built_from_quoted_identifiers_with_safe_defaults():
    rel = dict(schema='my schema', name='we"ird; DROP TABLE x', relkind='r')
    sql = build_sql(normalize_task(dict(action='vacuum', table='x')), rel)
    assert sql == 'VACUUM (ANALYZE, TRUNCATE false) "my schema"."we""ird; DROP TABLE x"'
    assert build_sql(normalize_task(dict(action='reindex', table='x')), rel).startswith('REINDEX TABLE CONCURRENTLY ')
    assert build_sql(normalize_task(dict(action='vacuum', table='x', full=True, analyze=False)), rel) == \
        'VACUUM (FULL) "my schema"."we""ird; DROP TABLE x"'


def test_concurrent_reindex_refused_on_broken_14_minor_releases():
    assert concurrent_reindex_broken(140000) and concurrent_reindex_broken(140003)
    assert not concurrent_reindex_broken(140004)
    assert not concurrent_reindex_broken(130010) and not concurrent_reindex_broken(150004)


def test_cc_kind():
    assert cc_kind('items_v_ccnew') == 'ccnew'
    assert cc_kind('items_v_ccnew12') == 'ccnew'
    assert cc_kind('items_v_ccold1') == 'ccold'
    assert cc_kind('items_ccnewer') is None


@pytest.mark.parametrize('spec', [
    dict(action='vacuum'),
    dict(action='vacuum', table='a', index='b'),
    dict(action='vacuum', index='b'),
    dict(action='truncate', table='a'),
    dict(action='vacuum', table='a"b'),
])
def test_bad_task_specs_are_refused(spec):
    with pytest.raises(MaintenanceError):
        normalize_task(spec)


# ----------------------------------------------------------------------------- engine and module

def test_module_runs_vacuum_analyze_reindex(pg_db, tables):
    assert _last_vacuum(tables, 'items') is None
    result = run_module('pg_maintenance', dict(pg_db, tasks=[
        dict(action='vacuum', table='items'),
        dict(action='analyze', table='public.other'),
        dict(action='reindex', table='items'),
        dict(action='reindex', index='items_v'),
    ]))
    assert not result.failed, result
    assert result['changed'] is True
    assert [r['result'] for r in result['operations']] == ['done'] * 4
    assert result['operations'][0]['sql'] == 'VACUUM (ANALYZE, TRUNCATE false) "public"."items"'
    assert result['operations'][2]['sql'] == 'REINDEX TABLE CONCURRENTLY "public"."items"'
    assert result['summary']['done'] == 4
    assert _last_vacuum(tables, 'items') is not None
    assert _invalid(tables) == []


def test_check_mode_runs_nothing(pg_db, tables):
    result = run_module('pg_maintenance', dict(pg_db, tasks=[
        dict(action='vacuum', table='items'), dict(action='reindex', index='items_v')]), check_mode=True)
    assert not result.failed, result
    assert [r['result'] for r in result['operations']] == ['planned', 'planned']
    assert result['operations'][1]['sql'] == 'REINDEX INDEX CONCURRENTLY "public"."items_v"'
    assert result['changed'] is True  # would change
    assert _last_vacuum(tables, 'items') is None
    assert _q(tables, "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables WHERE relname = 'items'")[0][0] == 0


def test_vacuum_full_refused_without_allow_vacuum_full(pg_db, tables):
    result = run_module('pg_maintenance', dict(pg_db, tasks=[
        dict(action='vacuum', table='other'), dict(action='vacuum', table='items', full=True)]))
    assert result.failed
    assert 'allow_vacuum_full' in result['msg']
    # refused before anything ran: the first task did not run either
    assert _last_vacuum(tables, 'other') is None
    assert _last_vacuum(tables, 'items') is None

    result = run_module('pg_maintenance', dict(pg_db, allow_vacuum_full=True, tasks=[
        dict(action='vacuum', table='items', full=True)]))
    assert not result.failed, result
    assert result['operations'][0]['result'] == 'done'
    assert result['operations'][0]['lock'] == 'ACCESS EXCLUSIVE'
    assert any('ACCESS EXCLUSIVE' in w for w in _warnings(result))


def test_odd_names_are_identifiers_and_unknown_names_touch_nothing(pg_db, pg_conn):
    _q(pg_conn, """CREATE SCHEMA "odd.schema";
                   CREATE TABLE "odd.schema"."we""ird; name" (id int PRIMARY KEY);
                   CREATE TABLE "My Table" (id int);
                   CREATE TABLE victim (id int);""")
    result = run_module('pg_maintenance', dict(pg_db, tasks=[
        dict(action='vacuum', table='"odd.schema"."we""ird; name"'),
        dict(action='analyze', table='"My Table"'),
    ]))
    assert not result.failed, result
    assert [r['result'] for r in result['operations']] == ['done', 'done']
    assert result['operations'][0]['sql'] == 'VACUUM (ANALYZE, TRUNCATE false) "odd.schema"."we""ird; name"'

    result = run_module('pg_maintenance', dict(pg_db, tasks=[
        dict(action='vacuum', table='"My Table"'),
        dict(action='vacuum', table='victim; DROP TABLE victim'),
        dict(action='analyze', table="victim' OR '1'='1"),
    ]))
    assert result.failed
    assert "'victim; DROP TABLE victim' does not exist" in result['msg']
    assert 'does not exist' in result['msg']
    assert _q(pg_conn, "SELECT to_regclass('victim') IS NOT NULL")[0][0]
    assert _last_vacuum(pg_conn, 'My Table') is None  # nothing ran


def test_missing_table_is_a_clear_error(pg_db, pg_conn):
    result = run_module('pg_maintenance', dict(pg_db, tasks=[dict(action='vacuum', table='public.nope')]))
    assert result.failed
    assert result['msg'] == "table 'public.nope' does not exist"
    result = run_module('pg_maintenance', dict(pg_db, tasks=[dict(action='reindex', index='nope_idx')]))
    assert result.failed and "index 'nope_idx' does not exist" in result['msg']


def test_lock_conflict_skips_the_object_continues_and_never_queues_others(pg_db, tables):
    """A session holds ACCESS EXCLUSIVE on items; a third session's SELECT waits on it.

    Maintenance (in-process engine, own connection) must give up on items within its
    budget, do `other`, and once it has given up hold no lock request that the
    third session could be queued behind: its blockers are only the holder.
    """
    holder = _connect(pg_db, 'holder', autocommit=False)
    reader = _connect(pg_db, 'reader')
    maint = connect_postgres(dict(pg_db, application_name='maint-under-test'))
    try:
        _q(holder, 'LOCK TABLE items IN ACCESS EXCLUSIVE MODE')
        holder_pid = holder.get_backend_pid()
        reader_pid = reader.get_backend_pid()
        maint_pid = maint.get_backend_pid()
        outcome = {}

        def read():
            outcome['count'] = _q(reader, 'SELECT count(*) FROM items')[0][0]

        reader_thread = threading.Thread(target=read)
        reader_thread.start()
        observer = _connect(pg_db, 'observer')
        _wait_for(lambda: _q(observer, 'SELECT pg_blocking_pids(%s)', (reader_pid,))[0][0], 'reader to wait')

        result = run_maintenance(maint, [
            dict(action='vacuum', table='items', full=False),
            dict(action='reindex', index='items_v'),
            dict(action='analyze', table='other'),
        ], lock_timeout='20ms', lock_timeout_max='80ms', lock_wait_budget='600ms')
        by_object = dict(((r['object'], r['action']), r) for r in result['operations'])
        assert by_object[('public.other', 'analyze')]['result'] == 'done'
        for key in (('public.items', 'vacuum'), ('public.items_v', 'reindex')):
            row = by_object[key]
            assert row['result'] == 'skipped', row
            assert 'lock not available' in row['reason']
            assert row['attempts'] > 1  # retried with backoff, not one long wait

        # Given up: our session (still connected) waits for nothing and holds nothing on items,
        # and the reader is blocked by the holder alone.
        assert _q(observer, 'SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted', (maint_pid,))[0][0] == 0
        assert _q(observer, "SELECT count(*) FROM pg_locks WHERE pid = %s AND relation = 'items'::regclass",
                  (maint_pid,))[0][0] == 0
        assert _q(observer, 'SELECT pg_blocking_pids(%s)', (reader_pid,))[0][0] == [holder_pid]
        # No invalid index left by the skipped REINDEX CONCURRENTLY.
        assert _invalid(observer) == []

        holder.commit()
        reader_thread.join(60)
        assert outcome.get('count') == 2000 - 666
        observer.close()
    finally:
        holder.rollback()
        for conn in (holder, reader, maint):
            conn.close()


def test_module_under_vacuum_full_contention_reports_skip(pg_db, tables):
    """VACUUM FULL wants ACCESS EXCLUSIVE; with a holder it is skipped within budget, the rest run."""
    holder = _connect(pg_db, 'holder', autocommit=False)
    try:
        _q(holder, 'SELECT count(*) FROM items')  # ACCESS SHARE, held until commit
        result = run_module('pg_maintenance', dict(
            pg_db, allow_vacuum_full=True, lock_timeout='20ms', lock_timeout_max='100ms', lock_wait_budget='500ms',
            tasks=[dict(action='vacuum', table='items', full=True), dict(action='vacuum', table='other')]))
        assert not result.failed, result
        assert [r['result'] for r in result['operations']] == ['skipped', 'done']
        assert any('skipped vacuum of public.items' in w for w in _warnings(result))
        assert result['changed'] is True
        strict = run_module('pg_maintenance', dict(
            pg_db, allow_vacuum_full=True, lock_timeout='20ms', lock_timeout_max='50ms', lock_wait_budget='200ms',
            fail_on_skipped=True, tasks=[dict(action='vacuum', table='items', full=True)]))
        assert strict.failed and 'lock not available' in strict['msg']
    finally:
        holder.rollback()
        holder.close()


def test_failed_reindex_concurrently_leaves_no_invalid_index_of_its_own(pg_db, pg_conn, pg_server):
    """Cancel a REINDEX CONCURRENTLY after it created items_v_ccnew: the module drops that index,
    and a pre-existing unrelated invalid index survives."""
    _q(pg_conn, """CREATE TABLE items (id int, v int, d int);
                   INSERT INTO items SELECT g, g % 10, 1 FROM generate_series(1, 500) g;
                   CREATE INDEX items_v ON items (v);""")
    with pytest.raises(psycopg2.Error):
        _q(pg_conn, 'CREATE UNIQUE INDEX CONCURRENTLY items_d_unique ON items (d)')  # duplicates: left invalid
    assert _invalid(pg_conn) == ['items_d_unique']

    writer = _connect(pg_db, 'writer', autocommit=False)
    _q(writer, 'INSERT INTO items VALUES (0, 0, 0)')  # open write transaction: REINDEX CONCURRENTLY waits for it
    canceller = _connect(pg_server.params(pg_db['login_db'], superuser=True), 'canceller')
    seen = {}

    def cancel_when_waiting():
        def waiting():
            rows = _q(canceller, """SELECT a.pid FROM pg_stat_activity a
                                    WHERE a.application_name = 'reindex-under-test'
                                      AND a.wait_event_type = 'Lock' AND a.wait_event = 'virtualxid'""")
            return rows[0][0] if rows else None
        pid = _wait_for(waiting, 'REINDEX CONCURRENTLY to wait for the writer')
        seen['invalid_while_waiting'] = _invalid(canceller)
        _q(canceller, 'SELECT pg_cancel_backend(%s)', (pid,))
        writer.commit()

    thread = threading.Thread(target=cancel_when_waiting)
    thread.start()
    try:
        result = run_module('pg_maintenance', dict(
            pg_db, application_name='reindex-under-test', lock_timeout='1m', lock_timeout_max='1m',
            cleanup_budget='1m', tasks=[dict(action='reindex', index='items_v')]))
    finally:
        thread.join(60)
        writer.rollback()
        writer.close()
        canceller.close()
    assert 'items_v_ccnew' in seen['invalid_while_waiting']  # the failure really left a _ccnew behind
    assert result.failed
    row = result['operations'][0]
    assert row['result'] == 'failed'
    assert 'canceling statement due to user request' in row['reason']
    assert row['cleanup']['dropped'] == ['public.items_v_ccnew']
    assert row['cleanup']['left'] == []
    assert _invalid(pg_conn) == ['items_d_unique']  # not ours: untouched
    assert _q(pg_conn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_v'")[0][0] == 1


def test_drop_invalid_index_refuses_valid_indexes(pg_db, tables):
    result = run_module('pg_maintenance', dict(pg_db, tasks=[dict(action='drop_invalid_index', index='items_v')]))
    assert result.failed and 'is valid' in result['msg']
    assert _q(tables, "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_v'")[0][0] == 1


def test_drop_invalid_index_is_idempotent(pg_db, tables):
    """Issue 13, defect 6: the second run failed with "index ... does not exist"; it must be ok, changed=false."""
    _q(tables, 'INSERT INTO other SELECT 1000 + g FROM generate_series(1, 10) g')
    _q(tables, 'ALTER TABLE other ADD COLUMN d int DEFAULT 1')
    with pytest.raises(psycopg2.Error):
        _q(tables, 'CREATE UNIQUE INDEX CONCURRENTLY other_d_unique ON other (d)')
    assert _invalid(tables) == ['other_d_unique']
    args = dict(pg_db, tasks=[dict(action='drop_invalid_index', index='other_d_unique')])
    check = run_module('pg_maintenance', args, check_mode=True)
    assert not check.failed and check['changed'] is True and check['operations'][0]['result'] == 'planned'
    first = run_module('pg_maintenance', args)
    assert not first.failed, first
    assert first['changed'] is True and first['operations'][0]['result'] == 'done'
    assert _invalid(tables) == []
    for check_mode in (False, True):
        again = run_module('pg_maintenance', args, check_mode=check_mode)
        assert not again.failed, again
        assert again['changed'] is False
        assert again['operations'][0]['result'] == 'absent', again['operations']
        assert again['summary'] == dict(done=0, skipped=0, failed=0, planned=0, absent=1)


def test_other_missing_objects_still_refuse_the_run(pg_db, tables):
    result = run_module('pg_maintenance', dict(pg_db, tasks=[dict(action='drop_invalid_index', index='gone_idx'),
                                                             dict(action='reindex', index='gone_too')]))
    assert result.failed and "index 'gone_too' does not exist" in result['msg'] and 'gone_idx' not in result['msg']


@pytest.mark.parametrize('change, expected', [
    (dict(lock_timeout='0s'), 'lock_timeout must be between 1ms and 24d20h31m23s647ms'),
    (dict(lock_timeout='100ms', lock_timeout_max='50ms'), 'lock_timeout_max must be between 100ms and'),
    (dict(lock_timeout='100 weeks'), 'lock_timeout must be between'),
    (dict(lock_timeout=100), "lock_timeout: '100' is not a duration with a unit"),
    (dict(lock_wait_budget='-1s'), 'lock_wait_budget'),
    (dict(lock_wait_budget='nan'), 'lock_wait_budget'),
    (dict(lock_wait_budget=30), "lock_wait_budget: '30' is not a duration with a unit"),
    (dict(statement_timeout='inf'), 'statement_timeout'),
    (dict(statement_timeout='1000 days'), 'statement_timeout must be between 0s and'),
    (dict(statement_timeout=3600), "statement_timeout: '3600' is not a duration with a unit"),
    (dict(cleanup_budget='-0.5s'), 'cleanup_budget'),
    (dict(time_budget='nan'), 'time_budget'),
    (dict(time_budget='0s'), 'time_budget must be between 1s and 30d, got \'0s\' (leave it unset for no limit)'),
    (dict(tasks=[dict(action='vacuum', table='a.b.c')]), 'a.b.c'),
    (dict(tasks=[dict(action='vacuum')]), 'needs exactly one of table or index'),
    (dict(targets='auto', thresholds=dict(dead_tuples_pct='nan')), 'dead_tuples_pct'),
    (dict(targets='auto', thresholds=dict(nope=1)), 'unknown threshold'),
    (dict(targets='auto', schemas=['ok', 'bad\x00']), 'schemas'),
])
def test_maintenance_bad_options_refused_before_connecting(change, expected):
    args = dict(login_host='127.0.0.1', login_port=_closed_port(), login_user='u', login_db='d',
                tasks=[dict(action='analyze', table='t')])
    args.update(change)
    if change.get('targets') == 'auto':
        args.pop('tasks')
    result = run_module('pg_maintenance', args)
    assert result.failed, result
    assert expected in result['msg'] and 'unreachable' not in result['msg'], result['msg']
    assert '\n' not in result['msg'].strip() and 'Traceback' not in result.stderr


def _closed_port():
    from cerniq_testkit.servers import free_port
    return free_port()


def test_auto_targets_from_health(pg_db, tables):
    _q(tables, 'SELECT pg_stat_force_next_flush()')
    _wait_for(lambda: _q(tables, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'items'")[0][0] > 0,
              'dead tuple stats')
    with pytest.raises(psycopg2.Error):
        _q(tables, 'CREATE UNIQUE INDEX CONCURRENTLY items_v_ccnew ON items (v)')  # a leftover-looking invalid index
    args = dict(pg_db, targets='auto', thresholds=dict(min_dead_tuples=10, dead_tuples_pct=1, freeze_age=10 ** 9,
                                                       index_bloat_min_bytes=10 ** 12))
    plan = run_module('pg_maintenance', args, check_mode=True)
    assert not plan.failed, plan
    planned = [(r['action'], r['object']) for r in plan['operations']]
    assert ('vacuum', 'public.items') in planned
    assert ('drop_invalid_index', 'public.items_v_ccnew') in planned
    assert _last_vacuum(tables, 'items') is None
    assert 'items_v_ccnew' in _invalid(tables)

    done = run_module('pg_maintenance', args)
    assert not done.failed, done
    assert all(r['result'] == 'done' for r in done['operations'])
    assert _last_vacuum(tables, 'items') is not None
    assert _invalid(tables) == []


def test_run_time_budget_skips_objects_not_started(pg_db, tables):
    conn = connect_postgres(pg_db)
    try:
        ticks = iter(range(0, 10000, 2))   # a clock two seconds further at each look: the budget is soon spent
        runner = MaintenanceRunner(conn, time_budget='1s', clock=lambda: next(ticks))
        result = runner.run([dict(action='analyze', table='items'), dict(action='analyze', table='other')])
    finally:
        conn.close()
    reasons = [r['reason'] or '' for r in result['operations']]
    assert result['operations'][-1]['result'] == 'skipped'
    assert 'time_budget of 1s spent before this object' in reasons[-1]


def test_sessions_queued_behind_our_lock_request_get_through_while_we_still_retry(pg_db, tables):
    """VACUUM FULL wants ACCESS EXCLUSIVE while a holder keeps ACCESS SHARE open.

    A reader arriving while our request is queued would wait behind it. With short lock
    timeouts and backoff, the reader gets its ACCESS SHARE while maintenance is still
    retrying and while the holder is still open: it never waits for the holder's lifetime
    behind our request.
    """
    holder = _connect(pg_db, 'holder', autocommit=False)
    reader = _connect(pg_db, 'reader')
    observer = _connect(pg_db, 'observer')
    maint = connect_postgres(dict(pg_db, application_name='maint-full'))
    maint_pid = maint.get_backend_pid()
    outcome = {}
    try:
        _q(holder, 'SELECT count(*) FROM items')  # ACCESS SHARE until commit

        def maintain():
            outcome['result'] = run_maintenance(
                maint, [dict(action='vacuum', table='items', full=True)], allow_vacuum_full=True,
                lock_timeout='50ms', lock_timeout_max='200ms', lock_wait_budget='4s')

        worker = threading.Thread(target=maintain)
        worker.start()
        _wait_for(lambda: _q(observer, 'SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted',
                             (maint_pid,))[0][0], 'our ACCESS EXCLUSIVE request to queue')
        outcome['read'] = _q(reader, 'SELECT count(*) FROM items')[0][0]
        outcome['maintenance_still_retrying'] = worker.is_alive()
        outcome['holder_still_open'] = holder.get_transaction_status() != 0
        worker.join(120)
    finally:
        holder.rollback()
        for conn in (holder, reader, observer, maint):
            conn.close()
    assert outcome['read'] == 2000 - 666
    assert outcome['maintenance_still_retrying'] is True
    assert outcome['holder_still_open'] is True
    row = outcome['result']['operations'][0]
    assert row['result'] == 'skipped' and row['attempts'] > 1
    assert any('ACCESS EXCLUSIVE' in w for w in outcome['result']['warnings'])


def test_failed_reindex_table_toast_leftover_needs_a_superuser(pg_db, pg_conn, pg_server):
    """REINDEX TABLE CONCURRENTLY also copies the TOAST index. The table owner cannot drop the
    invalid TOAST copy a failure leaves: it is reported (with the way out), and a superuser's
    drop_invalid_index removes it."""
    _q(pg_conn, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'x' FROM generate_series(1, 100) g")
    writer = _connect(pg_db, 'writer', autocommit=False)
    _q(writer, "INSERT INTO items VALUES (0, 'y')")
    su = pg_server.params(pg_db['login_db'], superuser=True)
    canceller = _connect(su, 'canceller')

    def cancel_when_waiting():
        pid = _wait_for(lambda: (_q(canceller, """SELECT pid FROM pg_stat_activity WHERE application_name = 'reindex-toast'
                                                  AND wait_event = 'virtualxid'""") or [[None]])[0][0], 'reindex wait')
        _q(canceller, 'SELECT pg_cancel_backend(%s)', (pid,))
        writer.commit()

    thread = threading.Thread(target=cancel_when_waiting)
    thread.start()
    try:
        result = run_module('pg_maintenance', dict(pg_db, application_name='reindex-toast', lock_timeout='1m',
                                                   lock_timeout_max='1m', tasks=[dict(action='reindex', table='items')]))
    finally:
        thread.join(60)
        writer.rollback()
        writer.close()
    cleanup = result['operations'][0]['cleanup']
    assert cleanup['dropped'] == ['public.items_pkey_ccnew']
    [left] = cleanup['left']
    assert left['index'].startswith('pg_toast.pg_toast_') and left['index'].endswith('_index_ccnew')
    assert 'superuser' in left['reason']
    assert any('invalid index(es) left' in w for w in _warnings(result))

    fixed = run_module('pg_maintenance', dict(su, tasks=[dict(action='drop_invalid_index', index=left['index'])]))
    assert not fixed.failed, fixed
    assert _invalid(canceller) == []
    canceller.close()


def test_lost_connection_fails_that_object_and_skips_the_rest(pg_db, tables, pg_server):
    holder = _connect(pg_db, 'holder', autocommit=False)
    admin = _connect(pg_server.params(pg_db['login_db'], superuser=True), 'admin')
    maint = connect_postgres(dict(pg_db, application_name='maint-lost'))
    maint_pid = maint.get_backend_pid()
    outcome = {}
    try:
        _q(holder, 'LOCK TABLE items IN ACCESS EXCLUSIVE MODE')

        def maintain():
            outcome['result'] = run_maintenance(maint, [
                dict(action='vacuum', table='items'), dict(action='analyze', table='other')],
                lock_timeout='50ms', lock_timeout_max='100ms', lock_wait_budget='1m')

        worker = threading.Thread(target=maintain)
        worker.start()
        _wait_for(lambda: _q(admin, 'SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted', (maint_pid,))[0][0],
                  'maintenance to wait for its lock')
        _q(admin, 'SELECT pg_terminate_backend(%s)', (maint_pid,))  # the test's own session, not the engine
        worker.join(120)
    finally:
        holder.rollback()
        for conn in (holder, admin, maint):
            conn.close()
    first, second = outcome['result']['operations']
    assert first['result'] == 'failed' and first['reason']
    assert second['result'] == 'skipped' and 'connection lost' in second['reason']
