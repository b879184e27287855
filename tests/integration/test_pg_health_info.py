"""pg_health_info: engine and module against a real throwaway PostgreSQL 15."""

import threading
import time

import psycopg2
import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres
from ansible_collections.cerniq.ops.plugins.module_utils.pg_health import (
    HealthError,
    health_report,
    normalize_orphan_check,
)
from cerniq_testkit.ansible_run import run_module

SMALL = dict(unused_index_min_bytes=0, index_bloat_min_bytes=0, table_bloat_min_bytes=0)


def _q(conn, sql, args=None):
    cur = conn.cursor()
    cur.execute(sql, args)
    rows = cur.fetchall() if cur.description else None
    cur.close()
    return rows


def _wait_for(predicate, what, limit=60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError('gave up waiting for %s' % what)


def _report(params, **kwargs):
    conn = connect_postgres(params)
    try:
        return health_report(conn, **kwargs)
    finally:
        conn.close()


def _warnings(result):
    return [w['event']['msg'] if isinstance(w, dict) else w for w in result.get('warnings') or []]


@pytest.fixture
def schema(pg_conn):
    _q(pg_conn, """
        CREATE TABLE parent (id int PRIMARY KEY, code text UNIQUE, tag text) WITH (autovacuum_enabled = false);
        CREATE UNIQUE INDEX parent_tag_unique ON parent (tag);
        CREATE INDEX parent_tag_plain ON parent (tag);
        CREATE TABLE child (id int PRIMARY KEY, parent_code text REFERENCES parent (code), v int)
            WITH (autovacuum_enabled = false);
        CREATE INDEX child_v ON child (v);
        ALTER TABLE child ADD CONSTRAINT child_v_excl EXCLUDE USING btree (id WITH =);
        INSERT INTO parent SELECT g, 'c' || g, 't' || g FROM generate_series(1, 1000) g;
        INSERT INTO child SELECT g, 'c' || (g % 1000 + 1), g % 7 FROM generate_series(1, 1000) g;
        ANALYZE;
    """)
    return pg_conn


def test_unused_indexes_exclude_primary_unique_and_constraint_indexes(pg_db, schema):
    report = _report(pg_db, sections=['index_usage', 'unused_indexes'], thresholds=SMALL)
    usage = dict((r['index'], r) for r in report['index_usage'])
    assert set(usage) >= {'parent_pkey', 'parent_code_key', 'parent_tag_unique', 'parent_tag_plain',
                          'child_pkey', 'child_v', 'child_v_excl'}
    assert usage['child_v_excl']['constraint_backed'] and not usage['child_v_excl']['is_unique']
    unused = sorted(r['index'] for r in report['unused_indexes'])
    assert unused == ['child_v', 'parent_tag_plain']
    assert 'stats_age_days' in report['unused_indexes'][0]
    assert 'stats_reset' in report['stats']

    # Scanned indexes are not unused; and the size floor applies.
    _q(schema, 'SET enable_seqscan = off; SELECT count(*) FROM child WHERE v = 3; SELECT pg_stat_force_next_flush()')
    _wait_for(lambda: _q(schema, "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'child_v'")[0][0],
              'index scan stats')
    report = _report(pg_db, sections=['unused_indexes'], thresholds=SMALL)
    assert [r['index'] for r in report['unused_indexes']] == ['parent_tag_plain']
    report = _report(pg_db, sections=['unused_indexes'], thresholds=dict(unused_index_min_bytes=10 ** 9))
    assert report['unused_indexes'] == []


def test_invalid_indexes_are_reported_with_their_kind(pg_db, schema):
    _q(schema, "INSERT INTO child VALUES (5000, NULL, 3)")
    for name in ('child_v_ccnew', 'child_v_ccold1', 'child_v_broken'):
        with pytest.raises(psycopg2.Error):
            _q(schema, 'CREATE UNIQUE INDEX CONCURRENTLY %s ON child (v)' % name)  # duplicates: left invalid
    report = _report(pg_db, sections=['invalid_indexes', 'reindex_candidates'], thresholds=dict(
        index_bloat_min_bytes=10 ** 12))
    kinds = dict((r['index'], r['kind']) for r in report['invalid_indexes'])
    assert kinds == {'child_v_ccnew': 'ccnew', 'child_v_ccold1': 'ccold', 'child_v_broken': 'invalid'}
    assert all(not r['build_in_progress'] for r in report['invalid_indexes'])
    actions = dict((r['index'], r['action']) for r in report['reindex_candidates'])
    assert actions == {'child_v_ccnew': 'drop_invalid_index', 'child_v_ccold1': 'drop_invalid_index',
                       'child_v_broken': 'reindex'}


def test_vacuum_and_freeze_candidates(pg_db, schema):
    _q(schema, 'DELETE FROM child WHERE id <= 300; SELECT pg_stat_force_next_flush()')
    _wait_for(lambda: _q(schema, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'child'")[0][0] >= 300,
              'dead tuple stats')
    report = _report(pg_db, sections=['vacuum_candidates'])
    rows = dict((r['table'], r) for r in report['vacuum_candidates'])
    assert list(rows) == ['child']
    assert rows['child']['reasons'] == ['dead_tuples']
    assert rows['child']['dead_pct'] == pytest.approx(30.0, abs=0.5)

    # Thresholds are options: a higher dead share hides it; a tiny freeze age flags every table.
    assert _report(pg_db, sections=['vacuum_candidates'], thresholds=dict(dead_tuples_pct=50))['vacuum_candidates'] == []
    report = _report(pg_db, sections=['vacuum_candidates'], thresholds=dict(freeze_age=0, min_dead_tuples=10 ** 9))
    assert set(r['table'] for r in report['vacuum_candidates']) == {'parent', 'child'}
    assert all(r['reasons'] == ['freeze'] for r in report['vacuum_candidates'])


def test_orphan_checks_structured_and_query(pg_db, pg_conn):
    _q(pg_conn, """
        CREATE TABLE bronze_contacts (id bigint PRIMARY KEY);
        CREATE TABLE silver_companies (id bigint PRIMARY KEY, source_bronze_id bigint);
        INSERT INTO bronze_contacts VALUES (1), (2);
        INSERT INTO silver_companies VALUES (1, 1), (2, 2), (3, 77), (4, 78), (5, NULL);
    """)
    checks = [
        dict(name='orphan_silver', child_table='silver_companies', child_column='source_bronze_id',
             parent_table='public.bronze_contacts', parent_column='id'),
        dict(name='orphan_silver_sql', query='SELECT count(*) FROM silver_companies sc WHERE sc.source_bronze_id '
                                             'IS NOT NULL AND NOT EXISTS (SELECT 1 FROM bronze_contacts bc '
                                             'WHERE bc.id = sc.source_bronze_id)'),
        dict(name='rows_form', query='SELECT id FROM silver_companies WHERE id > 3'),
        dict(name='read_only', query='DELETE FROM bronze_contacts RETURNING id'),
    ]
    result = run_module('pg_health_info', dict(pg_db, sections=['orphans'], orphan_checks=checks))
    assert not result.failed, result
    found = dict((r['name'], r) for r in result['orphans'])
    assert found['orphan_silver']['count'] == 2
    assert found['orphan_silver_sql']['count'] == 2
    assert found['rows_form']['count'] == 2
    assert 'read-only transaction' in found['read_only']['error']
    assert any('read_only' in w for w in _warnings(result))
    assert _q(pg_conn, 'SELECT count(*) FROM bronze_contacts')[0][0] == 2
    assert result['changed'] is False


def test_orphan_check_identifiers_are_quoted():
    check = normalize_orphan_check(dict(name='x', child_table='"odd.s"."c; x"', child_column='p"id',
                                        parent_table='parent', parent_column='id'))
    assert check['sql'] == ('SELECT count(*) FROM "odd.s"."c; x" c WHERE c."p""id" IS NOT NULL AND NOT EXISTS '
                            '(SELECT 1 FROM "parent" p WHERE p."id" = c."p""id")')
    with pytest.raises(HealthError):
        normalize_orphan_check(dict(name='x', child_table='a'))
    with pytest.raises(HealthError):
        normalize_orphan_check(dict(query='SELECT 1'))


def test_bloat_estimate_and_pgstattuple_path(pg_db, pg_server, schema):
    _q(schema, 'DELETE FROM child WHERE id % 10 <> 0')
    _q(schema, 'VACUUM ANALYZE child')  # leaves sparse pages
    report = _report(pg_db, sections=['index_bloat', 'table_bloat'], thresholds=SMALL, exact_bloat='never')
    est = dict((r['index'], r) for r in report['index_bloat'])
    assert est['child_v']['method'] == 'estimate'
    assert 'child_v_excl' in est and 'parent_pkey' in est
    assert all(r['method'] == 'estimate' for r in report['table_bloat'])

    # With the extension installed but no privilege: estimates kept, one clear warning each.
    pg_server.psql('CREATE EXTENSION pgstattuple', pg_db['login_db'])
    report = _report(pg_db, sections=['index_bloat'], thresholds=SMALL)
    assert all(r['method'] == 'estimate' for r in report['index_bloat'])
    assert any('permission denied' in w for w in report['warnings'])

    # As a role allowed to run it (superuser here): measured.
    su = pg_server.params(pg_db['login_db'], superuser=True)
    report = _report(su, sections=['index_bloat', 'table_bloat', 'reindex_candidates'],
                     thresholds=dict(SMALL, index_bloat_pct=60))
    measured = dict((r['index'], r) for r in report['index_bloat'])
    assert measured['child_pkey']['method'] == 'pgstattuple'
    assert measured['child_pkey']['avg_leaf_density'] is not None
    assert measured['child_pkey']['bloat_pct'] > 60  # 90 % of the rows are gone, pages stayed
    assert 'child_pkey' in [r['index'] for r in report['reindex_candidates'] if r['kind'] == 'bloated']
    tables = dict((r['table'], r) for r in report['table_bloat'])
    assert tables['child']['method'] == 'pgstattuple'
    # Above the size floor only, in auto mode.
    report = _report(su, sections=['index_bloat'], thresholds=dict(index_bloat_min_bytes=10 ** 12))
    assert all(r['method'] == 'estimate' for r in report['index_bloat'])


def test_sessions_and_connections(pg_db, pg_server):
    idle = psycopg2.connect(**_dsn(pg_db, 'idle-in-tx'))
    busy = psycopg2.connect(**_dsn(pg_db, 'long-query'))
    busy.autocommit = True
    _q(idle, 'SELECT 1')  # psycopg2 opened a transaction: idle in transaction
    thread = threading.Thread(target=lambda: _swallow(lambda: _q(busy, 'SELECT pg_sleep(60)')))
    thread.start()
    watcher = psycopg2.connect(**_dsn(pg_db, 'watcher'))
    watcher.autocommit = True
    try:
        _wait_for(lambda: _q(watcher, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'long-query' "
                                      "AND state = 'active'")[0][0], 'the long query to run')
        _wait_for(lambda: _q(watcher, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idle-in-tx' "
                                      "AND now() > state_change")[0][0], 'idle in transaction to age')
        report = _report(pg_db, sections=['sessions', 'connections'],
                         thresholds=dict(long_running='0s', idle_in_transaction='0s'))
        apps_long = [r['application_name'] for r in report['sessions']['long_running']]
        apps_idle = [r['application_name'] for r in report['sessions']['idle_in_transaction']]
        assert 'long-query' in apps_long and 'pg_sleep' in report['sessions']['long_running'][0]['query']
        assert 'idle-in-tx' in apps_idle
        conns = report['connections']
        assert conns['max_connections'] == 100
        assert conns['total'] >= 3 and conns['idle_in_transaction'] >= 1
        assert conns['warning'] is False
        assert _report(pg_db, sections=['connections'], thresholds=dict(connections_warn_pct=0))['connections']['warning']
        assert _report(pg_db, sections=['sessions'])['sessions']['long_running'] == []
    finally:
        _q(watcher, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'long-query'")
        thread.join(60)
        for conn in (idle, busy, watcher):
            conn.close()


def _dsn(params, app):
    return dict(host=params['login_host'], port=params['login_port'], dbname=params['login_db'],
                user=params['login_user'], password=params['login_password'], application_name=app)


def _swallow(func):
    try:
        func()
    except psycopg2.Error:
        pass


def test_module_sections_thresholds_and_bad_options(pg_db, schema):
    result = run_module('pg_health_info', dict(pg_db, sections=['unused_indexes', 'invalid_indexes'],
                                               thresholds=dict(unused_index_min_bytes=0)))
    assert not result.failed, result
    assert result['changed'] is False
    assert set(result) >= {'unused_indexes', 'invalid_indexes', 'stats', 'thresholds'}
    assert 'index_usage' not in result and 'sessions' not in result
    assert sorted(r['index'] for r in result['unused_indexes']) == ['child_v', 'parent_tag_plain']

    check = run_module('pg_health_info', dict(pg_db, sections=['invalid_indexes']), check_mode=True)
    assert not check.failed and check['invalid_indexes'] == []

    bad = run_module('pg_health_info', dict(pg_db, thresholds=dict(nonsense=1)))
    assert bad.failed and 'unknown threshold' in bad['msg']
    bad = run_module('pg_health_info', dict(pg_db, sections=['everything']))
    assert bad.failed
    bad = run_module('pg_health_info', dict(pg_db, orphan_checks=[dict(name='x', child_table='a')]))
    assert bad.failed and 'missing' in bad['msg']


@pytest.mark.parametrize('change, expected', [
    (dict(thresholds=dict(dead_tuples_pct='nan')), 'dead_tuples_pct'),
    (dict(thresholds=dict(freeze_age='1e999')), 'freeze_age'),
    (dict(thresholds=dict(nope=1)), 'unknown threshold'),
    (dict(schemas=['public', 'bad\x00']), 'schemas'),
    (dict(orphan_checks=[dict(name='x')]), 'orphan check x: missing'),
    (dict(orphan_checks=[dict(name='x', query='SELECT 1', child_table='t')]), 'not both'),
    (dict(connect_timeout='0s'), 'connect_timeout must be between 1s and 1h'),
    (dict(connect_timeout=10), "connect_timeout: '10' is not a duration with a unit"),
    (dict(login_port=70000), 'login_port'),
])
def test_bad_options_refused_before_connecting(change, expected):
    from cerniq_testkit.servers import free_port
    args = dict(login_host='127.0.0.1', login_port=free_port(), login_user='u', login_db='d')
    args.update(change)
    result = run_module('pg_health_info', args)
    assert result.failed and expected in result['msg'] and 'unreachable' not in result['msg'], result['msg']
    assert '\n' not in result['msg'].strip() and 'Traceback' not in result.stderr


def test_query_error_is_one_line(pg_db, pg_server):
    """A report query the server refuses fails the task in one line, no traceback (was a traceback)."""
    pg_server.psql('REVOKE SELECT ON pg_catalog.pg_stats FROM PUBLIC', database=pg_db['login_db'])
    result = run_module('pg_health_info', dict(pg_db, sections=['index_bloat']))
    assert result.failed, result
    assert '\n' not in result['msg'].strip() and 'Traceback' not in result.stderr, result
    assert 'permission denied' in result['msg'] and 'pg_stats' in result['msg']
