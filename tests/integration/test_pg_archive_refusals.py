"""cerniq.ops.pg_archive refuses the dangerous cases of the hostile review (issue 13) before touching a row.

Each test reproduces one defect against a real PostgreSQL and checks, besides the refusal, that no row
of any table changed (an id/checksum snapshot of every table before and after).
"""

import psycopg2
import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.pg_archive import ArchiveError, run_archive
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.servers import free_port

CUTOFF = '2026-01-01 00:00:00+00'


def _q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def _snapshot(conn):
    """Every user table's row count and a checksum of its rows: the oracle for "nothing changed"."""
    tables = [r[0] for r in _q(conn, "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
                                     "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                                     "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")]
    return dict((t, tuple(_q(conn, 'SELECT count(*), coalesce(sum(hashtext(s::text)::bigint), 0) FROM ONLY %s s'
                             % t)[0])) for t in tables)


def _refused(result, *expected):
    assert result.failed, result
    message = result['msg']
    assert '\n' not in message.strip() and 'Traceback' not in message + result.stderr, result
    for text in expected:
        assert text in message, message
    return message


def _logs(conn, days=200):
    """``logs``: one row per hour over the last ``days`` days (server time)."""
    _q(conn, 'CREATE TABLE logs (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, note text)')
    _q(conn, "INSERT INTO logs SELECT g, now() - g * interval '1 hour' + interval '10 minutes', 'n' "
             "FROM generate_series(0, %s) g", (days * 24,))


# ---------------------------------------------------------------- defect 2: durations and cutoffs

@pytest.mark.parametrize('older_than', ['90', 90, '90.5', '  7 '])
def test_older_than_without_unit_refused(pg_db, pg_conn, older_than):
    """Defect 2: ``older_than: 90`` was interval '90' = 90 seconds and purged today's rows too."""
    _logs(pg_conn)
    before = _snapshot(pg_conn)
    result = run_module('pg_archive', dict(pg_db, source_table='logs', older_than=older_than))
    _refused(result, 'no unit')
    assert _snapshot(pg_conn) == before


@pytest.mark.parametrize('args, expected', [
    (dict(older_than='90 days ago'), 'not a duration'),
    (dict(older_than='-90 days'), 'not a duration'),
    (dict(older_than='0 days'), 'more than zero'),
    (dict(older_than='1 fortnight'), 'not a duration'),
    (dict(older_than='P90D'), 'not a duration'),
    (dict(cutoff='2999-01-01'), 'in the future'),
    (dict(cutoff='infinity'), 'not a finite'),
    (dict(cutoff='-infinity'), 'not a finite'),
])
def test_future_or_odd_cutoff_refused(pg_db, pg_conn, args, expected):
    """Defect 2: "90 days ago", "-90 days", 2999-01-01 and infinity put the cutoff in the future."""
    _logs(pg_conn)
    before = _snapshot(pg_conn)
    _refused(run_module('pg_archive', dict(pg_db, source_table='logs', archive_table='logs_archive',
                                           create_archive=True, **args)), expected)
    _refused(run_module('pg_archive', dict(pg_db, source_table='logs', **args), check_mode=True), expected)
    assert _snapshot(pg_conn) == before


@pytest.mark.parametrize('older_than, interval', [
    ('90 days', '90 days'), ('90d', '90 days'), ('2160h', '2160 hours'), ('12 weeks 6 days', '90 days'),
    ('3 months', '3 months'), ('1 year', '1 year'), ('129600 min', '90 days'),
])
def test_durations_with_units_move_exactly_the_old_rows(pg_db, pg_conn, older_than, interval):
    _logs(pg_conn, days=400)
    expected = _q(pg_conn, "SELECT count(*) FROM logs WHERE created_at < now() - %s::interval", (interval,))[0][0]
    result = run_module('pg_archive', dict(pg_db, source_table='logs', archive_table='logs_archive',
                                           create_archive=True, older_than=older_than))
    assert not result.failed, result
    assert abs(result['moved'] - expected) <= 1  # the clock moved by less than an hour between the two
    assert _q(pg_conn, "SELECT count(*) FROM logs_archive WHERE created_at >= %s", (result['cutoff'],))[0][0] == 0


@pytest.mark.parametrize('option, value', [
    ('lock_timeout', '500'), ('lock_timeout', '0s'), ('lock_timeout', '1 month'), ('statement_timeout', '60'),
    ('statement_timeout', '-1s'), ('statement_timeout', '30 days'),
])
def test_session_timeouts_need_units_and_bounds(pg_db, pg_conn, option, value):
    _logs(pg_conn, days=2)
    result = run_module('pg_archive', dict(pg_db, source_table='logs', older_than='1 day', **{option: value}))
    _refused(result, option)


# ---------------------------------------------------------------- defect 3: cascades, triggers, rules

def _tasks(conn, on_delete='CASCADE'):
    """The review's case: approval_tasks referenced by approval_task_escalations."""
    _q(conn, 'CREATE TABLE approval_tasks (id int PRIMARY KEY, created_at timestamptz NOT NULL, '
             'escalation_level int NOT NULL DEFAULT 0)')
    _q(conn, "INSERT INTO approval_tasks SELECT g, %s::timestamptz - g * interval '1 day', g %% 2 "
             "FROM generate_series(1, 16) g", (CUTOFF,))
    _q(conn, 'CREATE TABLE approval_task_escalations (id int PRIMARY KEY, task_id int DEFAULT 2 '
             'REFERENCES approval_tasks ON DELETE %s, note text)' % on_delete)
    _q(conn, "INSERT INTO approval_task_escalations SELECT g, g, 'x' FROM generate_series(1, 16) g "
             "WHERE g % 2 = 1")


@pytest.mark.parametrize('on_delete', ['CASCADE', 'SET NULL', 'SET DEFAULT'])
def test_cascading_foreign_key_refused_and_listed(pg_db, pg_conn, on_delete):
    """Defect 3: archiving approval_tasks wiped approval_task_escalations through ON DELETE CASCADE."""
    _tasks(pg_conn, on_delete)
    before = _snapshot(pg_conn)
    args = dict(pg_db, source_table='approval_tasks', archive_table='approval_tasks_archive', create_archive=True,
                cutoff=CUTOFF, where='escalation_level > 0')
    for check_mode in (True, False):
        result = run_module('pg_archive', args, check_mode=check_mode)
        _refused(result, 'approval_task_escalations_task_id_fkey', 'ON DELETE %s' % on_delete,
                 'allow_delete_side_effects')
        assert result['delete_side_effects']['foreign_keys'] == [dict(
            name='approval_task_escalations_task_id_fkey', table='approval_task_escalations',
            references='approval_tasks', on_delete=on_delete)]
        assert result['changed'] is False
        assert _snapshot(pg_conn) == before
    allowed = run_module('pg_archive', dict(args, allow_delete_side_effects=True))
    assert not allowed.failed, allowed
    assert allowed['moved'] == 8
    assert allowed['delete_side_effects']['foreign_keys'][0]['on_delete'] == on_delete


def test_self_referencing_cascade_refused(pg_db, pg_conn):
    """A cascade inside the source deletes rows that are not due, and does not archive them."""
    _q(pg_conn, 'CREATE TABLE nodes (id int PRIMARY KEY, created_at timestamptz NOT NULL, '
                'parent int REFERENCES nodes ON DELETE CASCADE)')
    _q(pg_conn, "INSERT INTO nodes VALUES (1, '2020-01-01', NULL), (2, '2030-01-01', 1)")
    before = _snapshot(pg_conn)
    _refused(run_module('pg_archive', dict(pg_db, source_table='nodes', cutoff=CUTOFF)), 'nodes_parent_fkey')
    assert _snapshot(pg_conn) == before


@pytest.mark.parametrize('ddl, listed', [
    ("CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
     "INSERT INTO audit_log VALUES (OLD.id); RETURN OLD; END $$; "
     "CREATE TRIGGER logs_audit AFTER DELETE ON logs FOR EACH ROW EXECUTE FUNCTION audit()",
     'trigger logs_audit on logs (AFTER DELETE, ROW)'),
    ("CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
     "INSERT INTO audit_log VALUES (0); RETURN NULL; END $$; "
     "CREATE TRIGGER logs_audit BEFORE DELETE OR UPDATE ON logs FOR EACH STATEMENT EXECUTE FUNCTION audit()",
     'trigger logs_audit on logs (BEFORE DELETE, STATEMENT)'),
    ('CREATE RULE logs_keep AS ON DELETE TO logs DO ALSO INSERT INTO audit_log VALUES (OLD.id)',
     'rule logs_keep on logs (ON DELETE)'),
])
def test_delete_triggers_and_rules_refused_and_listed(pg_db, pg_conn, ddl, listed):
    _logs(pg_conn, days=100)
    _q(pg_conn, 'CREATE TABLE audit_log (id bigint)')
    _q(pg_conn, ddl)
    before = _snapshot(pg_conn)
    for check_mode in (True, False):
        result = run_module('pg_archive', dict(pg_db, source_table='logs', older_than='90 days'),
                            check_mode=check_mode)
        _refused(result, listed)
        assert _snapshot(pg_conn) == before


def test_disabled_trigger_and_restrict_foreign_key_are_not_side_effects(pg_db, pg_conn):
    _tasks(pg_conn, 'NO ACTION')
    _q(pg_conn, "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$")
    _q(pg_conn, 'CREATE TRIGGER t_noop BEFORE DELETE ON approval_tasks FOR EACH ROW EXECUTE FUNCTION noop()')
    _q(pg_conn, 'ALTER TABLE approval_tasks DISABLE TRIGGER t_noop')
    # Rows without escalations move; a referenced row makes its batch fail, rolled back as a whole.
    _q(pg_conn, 'DELETE FROM approval_task_escalations WHERE task_id > 8')
    result = run_module('pg_archive', dict(pg_db, source_table='approval_tasks', archive_table='a',
                                           create_archive=True, cutoff=CUTOFF, where='id > 8'))
    assert not result.failed, result
    assert result['moved'] == 8 and result['delete_side_effects'] == dict(foreign_keys=[], triggers=[], rules=[])
    failing = run_module('pg_archive', dict(pg_db, source_table='approval_tasks', archive_table='a', cutoff=CUTOFF))
    _refused(failing, 'approval_task_escalations')
    assert failing['moved'] == 0 and failing['left_for_next_run'] == 8
    assert _q(pg_conn, 'SELECT count(*) FROM approval_tasks')[0][0] == 8


def test_partitioned_source_lists_cascades_of_its_partitions(pg_db, pg_conn):
    _q(pg_conn, 'CREATE TABLE pt (id int, created_at timestamptz NOT NULL, PRIMARY KEY (id, created_at)) '
                'PARTITION BY RANGE (created_at)')
    _q(pg_conn, "CREATE TABLE pt_2025 PARTITION OF pt FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    _q(pg_conn, "CREATE TABLE pt_2026 PARTITION OF pt FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    _q(pg_conn, "INSERT INTO pt VALUES (1, '2025-06-01'), (2, '2026-02-01')")
    _q(pg_conn, 'CREATE TABLE child (id int, ts timestamptz, FOREIGN KEY (id, ts) REFERENCES pt ON DELETE CASCADE)')
    _q(pg_conn, "INSERT INTO child VALUES (1, '2025-06-01')")
    before = _snapshot(pg_conn)
    for source in ('pt', 'pt_2025'):
        result = run_module('pg_archive', dict(pg_db, source_table=source, cutoff=CUTOFF, partition_mode='batch'))
        _refused(result, 'child_id_ts_fkey on child (ON DELETE CASCADE)')
    assert _snapshot(pg_conn) == before


# ---------------------------------------------------------------- defect 8: where must be one expression

@pytest.mark.parametrize('where', [
    "status='promoted') OR (true",
    'true) OR (true',
    "(true",
    "note = ']' AND arr[1 = 1",
    'arr[1)] = 1',
    "a = 1 /* /* nested */ ) OR ( */ ) OR (true",
    "a = $x$ ) OR ( $x$ ) OR (true",
    "note = E'\\' ) OR ( ' ) OR (true",
    "note = 'a'\n' ) OR (true '  ) OR (true",
    "true; DELETE FROM logs",
    "a = 1 -- comment\r) OR (true",
    "a = $$unterminated",
])
def test_where_that_is_not_one_expression_refused(pg_db, pg_conn, where):
    """Defect 8: ``status='promoted') OR (true`` escaped the cutoff and purged every row."""
    _logs(pg_conn, days=100)
    _q(pg_conn, "ALTER TABLE logs ADD COLUMN status text DEFAULT 'new', ADD COLUMN arr int[] DEFAULT '{1}', "
                "ADD COLUMN a int DEFAULT 0")
    before = _snapshot(pg_conn)
    _refused(run_module('pg_archive', dict(pg_db, source_table='logs', older_than='90 days', where=where)), 'where')
    assert _snapshot(pg_conn) == before


@pytest.mark.parametrize('where', [
    "note = 'x'",
    "note <> ') OR (true'",
    "note <> E'\\' ) OR ( '",
    "note <> $$ ) OR ( $$ AND note <> $t$ $$ ) $t$",
    "note <> 'a'\n' ) OR (true'",
    "a = 1 /* nested /* ) OR ( */ still comment */ OR a = 0",
    "a = 0 -- ) OR (true",
    "arr[1] = 1 AND (a = 0 OR a = 2)",
    '"note" IS NOT NULL AND a$b IS NULL',
    "U&'\\0041' <> note",
    "note IN ('(', ')', '[')",
])
def test_accepted_where_never_reaches_rows_newer_than_the_cutoff(pg_db, pg_conn, where):
    """Accepted expressions are lexed as PostgreSQL lexes them: a purge with them deletes only old rows."""
    _logs(pg_conn, days=100)
    _q(pg_conn, "ALTER TABLE logs ADD COLUMN arr int[] DEFAULT '{1}', ADD COLUMN a int DEFAULT 0, "
                "ADD COLUMN a$b int")
    recent = set(r[0] for r in _q(pg_conn, "SELECT id FROM logs WHERE created_at >= now() - interval '89 days'"))
    result = run_module('pg_archive', dict(pg_db, source_table='logs', older_than='90 days', where=where))
    assert not result.failed, result
    assert recent <= set(r[0] for r in _q(pg_conn, 'SELECT id FROM logs')), 'a row newer than the cutoff was purged'
    assert len(recent) > 2000


# ---------------------------------------------------------------- defect 9: archive in the source's tree

def _partitioned(conn):
    _q(conn, 'CREATE TABLE pt (id int, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)')
    _q(conn, "CREATE TABLE pt_202609 PARTITION OF pt FOR VALUES FROM ('2025-09-01') TO ('2025-10-01')")
    _q(conn, "CREATE TABLE pt_202610 PARTITION OF pt FOR VALUES FROM ('2025-10-01') TO ('2025-11-01')")
    _q(conn, "INSERT INTO pt SELECT g, '2025-09-01'::timestamptz + (g % 60) * interval '1 day' "
             "FROM generate_series(1, 3000) g")
    _q(conn, 'CREATE TABLE legacy (id int, created_at timestamptz NOT NULL)')
    _q(conn, 'CREATE TABLE legacy_child () INHERITS (legacy)')
    _q(conn, "INSERT INTO legacy VALUES (1, '2025-01-01')")
    _q(conn, "INSERT INTO legacy_child VALUES (2, '2025-01-01')")


@pytest.mark.parametrize('source, archive, expected', [
    ('pt_202609', 'pt', 'is a parent of the source'),
    ('pt', 'pt_202609', 'is a partition'),
    ('pt_202609', 'pt_202610', 'same partition'),
    ('pt', 'pt', 'the source table itself'),
    ('legacy', 'legacy_child', 'inheritance child'),
    ('legacy_child', 'legacy', 'is a parent of the source'),
])
def test_archive_in_the_source_tree_refused(pg_db, pg_conn, source, archive, expected):
    """Defect 9: pt_202609 archived into its parent pt "moved" 3.1M rows of a 14k-row table and never ended."""
    _partitioned(pg_conn)
    before = _snapshot(pg_conn)
    for check_mode in (True, False):
        result = run_module('pg_archive', dict(pg_db, source_table=source, archive_table=archive,
                                               cutoff=CUTOFF, partition_mode='batch'), check_mode=check_mode)
        _refused(result, expected, 'refused')
    assert _snapshot(pg_conn) == before


def test_legacy_inheritance_parent_archives_only_its_own_rows(pg_db, pg_conn):
    _partitioned(pg_conn)
    result = run_archive(pg_conn, source_table='legacy', archive_table='legacy_archive', create_archive=True,
                         cutoff=CUTOFF)
    assert result['moved'] == 1 and result['left_for_next_run'] == 0
    assert any('inheritance child' in w for w in result['warnings'])
    assert _q(pg_conn, 'SELECT id FROM legacy_child')[0][0] == 2
    assert _q(pg_conn, 'SELECT id FROM legacy_archive') == [(1,)]


# ---------------------------------------------------------------- defect 10: timestamp column type

@pytest.mark.parametrize('column_type, value', [
    ('text', "'0'"), ('text', "'1 day'"), ('int', '0'), ('interval', "'1 day'"), ('time', "'00:00'"),
])
def test_timestamp_column_of_another_type_refused(pg_db, pg_conn, column_type, value):
    """Defect 10: a text column compared as text moved '0' and '1 day'."""
    _q(pg_conn, 'CREATE TABLE t (id int PRIMARY KEY, ts %s)' % column_type)
    _q(pg_conn, 'INSERT INTO t SELECT g, %s FROM generate_series(1, 10) g' % value)
    before = _snapshot(pg_conn)
    _refused(run_module('pg_archive', dict(pg_db, source_table='t', timestamp_column='ts', cutoff='2026-01-01')),
             'must be timestamp, timestamptz or date')
    assert _snapshot(pg_conn) == before


def test_timestamp_domain_and_timestamp_without_zone_accepted(pg_db, pg_conn):
    _q(pg_conn, 'CREATE DOMAIN event_time AS timestamptz NOT NULL')
    _q(pg_conn, 'CREATE TABLE t (id int PRIMARY KEY, ts event_time, local_ts timestamp(0))')
    _q(pg_conn, "INSERT INTO t SELECT g, '2025-12-25 00:00+00'::timestamptz + g * interval '1 day', "
                "'2025-12-25'::timestamp + g * interval '1 day' FROM generate_series(1, 20) g")
    first = run_archive(pg_conn, source_table='t', timestamp_column='ts', cutoff=CUTOFF, check_mode=True)
    second = run_archive(pg_conn, source_table='t', timestamp_column='local_ts', cutoff='2026-01-01 00:00')
    assert first['moved'] == 6 and second['moved'] == 6


# ---------------------------------------------------------------- defect 12: conflicts and bad options

def test_conflicting_key_in_archive_is_reported_and_counted(pg_db, pg_conn):
    """Defect 12: a conflicting primary key in the archive left ``left_for_next_run=0`` while rows remained due."""
    _q(pg_conn, 'CREATE TABLE ev (id int PRIMARY KEY, created_at timestamptz NOT NULL)')
    _q(pg_conn, "INSERT INTO ev SELECT g, %s::timestamptz - (g %% 2) * interval '1 day' + interval '1 hour' "
                "FROM generate_series(1, 2000) g", (CUTOFF,))
    _q(pg_conn, 'CREATE TABLE ev_archive (LIKE ev INCLUDING ALL)')
    _q(pg_conn, "INSERT INTO ev_archive VALUES (1999, '2000-01-01')")
    result = run_module('pg_archive', dict(pg_db, source_table='ev', archive_table='ev_archive', cutoff=CUTOFF,
                                           batch_size=100, min_batch_size=100, max_batch_size=100,
                                           strategy='index'))
    message = _refused(result, 'already holds a row with the key of a due row', '(id)=(1999)')
    due_left = _q(pg_conn, 'SELECT count(*) FROM ev WHERE created_at < %s', (CUTOFF,))[0][0]
    assert due_left > 0 and result['left_for_next_run'] == due_left, message
    assert result['moved'] == _q(pg_conn, 'SELECT count(*) FROM ev_archive')[0][0] - 1
    assert result['changed'] is (result['moved'] > 0)
    ids = [r[0] for r in _q(pg_conn, 'SELECT id FROM ev UNION ALL SELECT id FROM ev_archive WHERE id <> 1999')]
    assert sorted(ids) == list(range(1, 2001))


@pytest.mark.parametrize('change, expected', [
    (dict(batch_size=0), 'batch_size'),
    (dict(batch_size=10 ** 12), 'batch_size'),
    (dict(min_batch_size=500, max_batch_size=100), 'min_batch_size'),
    (dict(max_batch_size=0), 'max_batch_size'),
    (dict(target_batch_time='0s'), 'target_batch_time must be between 1ms and 10m'),
    (dict(target_batch_time='-5ms'), 'target_batch_time'),
    (dict(target_batch_time=200), "target_batch_time: '200' is not a duration with a unit"),
    (dict(time_budget='-1s'), 'time_budget'),
    (dict(time_budget='nan'), 'time_budget'),
    (dict(time_budget='inf'), 'time_budget'),
    (dict(time_budget='0s'), 'time_budget must be between 1s and 3650d'),
    (dict(time_budget=1800), "time_budget: '1800' is not a duration with a unit"),
    (dict(lock_retries=-1), 'lock_retries'),
    (dict(lock_retries=10 ** 9), 'lock_retries'),
    (dict(lock_timeout='soon'), 'lock_timeout'),
    (dict(source_table='a.b.c'), 'source_table'),
    (dict(source_table='"unterminated'), 'source_table'),
    (dict(archive_table='x.'), 'archive_table'),
    (dict(timestamp_column=''), 'timestamp_column'),
    (dict(where=''), 'where'),
    (dict(where='a = 1\x00'), 'where'),
    (dict(cutoff=' '), 'cutoff'),
])
def test_bad_options_refused_before_connecting(change, expected):
    """Bounds and types are checked before any connection: the server here is a closed port."""
    args = dict(login_host='127.0.0.1', login_port=free_port(), login_user='u', login_db='d',
                source_table='t', older_than='1 day')
    args.update(change)
    if 'cutoff' in change:
        args.pop('older_than')
    message = _refused(run_module('pg_archive', args), expected)
    assert 'unreachable' not in message


def test_engine_errors_carry_consistent_partial_results(pg_db, pg_conn):
    with pytest.raises(ArchiveError) as info:
        run_archive(pg_conn, source_table='nope', older_than='1 day')
    assert info.value.result['moved'] == 0 and info.value.result['changed'] is False
    with pytest.raises(ArchiveError):
        run_archive(pg_conn, source_table='nope', older_than='1 day', batch_size='many')
    with pytest.raises(ArchiveError):
        run_archive(pg_conn, source_table='nope', older_than='1 day', no_such_option=1)
    assert isinstance(pg_conn, psycopg2.extensions.connection) and not pg_conn.closed
