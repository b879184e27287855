"""Hostile input for the PostgreSQL modules.

Each example copies a template database (tests/hostile/pg_states.py), applies up to two drawn
corruptions (dropped tables and columns, columns of another type, triggers and constraints that reject
writes, values at the edge of their range, a table replaced by a view, cascading foreign keys, DELETE
triggers, conflicting archive rows, partitions), draws the module's options from its argument spec, runs
the real module against it and asks the oracle (tests/hostile/oracle.py and invariants.py). The CERNIQ
API the procedure modules call is a local stand-in (tests/hostile/api.py): it cannot run here.
"""

import psycopg2
from hypothesis import assume, given, strategies as st

from tests.hostile import known
from tests.hostile.api import POLICIES
from tests.hostile.argspec import module_args
from tests.hostile.harness import run_example
from tests.hostile.invariants import DETAIL_TABLES, INVARIANTS, pg_snapshotter
from tests.hostile.pg_states import (
    ARCHIVE, ARCHIVE_CORRUPTIONS, CERNIQ, CERNIQ_CORRUPTIONS, EMPTY, PG_CONNECTION_HOSTILE, SEED, TEMPLATES,
    archive_prepare, corrupt, corruptions, invalid_index)
from tests.hostile.profiles import budget

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import synthetic as cerniq_synthetic

TENANT = cerniq_synthetic.tenant_ids(SEED, 1)[0]
UUIDS = st.sampled_from([TENANT, '00000000-0000-0000-0000-000000000000', 'bad', ''])
TABLE_NAMES = ['approval_tasks', 'ops.approval_tasks', '"approval_tasks"', 'missing', 'public.users']


def _fresh(pg_workspace, template):
    pg_workspace.template(template, TEMPLATES[template])
    return pg_workspace.fresh(template)


def hostile_run(pg_workspace, data, module, template, pool, hints, detail_tables=(), api=None, prepare=None,
                draw_args=None):
    """Copy ``template``, corrupt it, draw options, run ``module``, judge it with its invariant."""
    names = data.draw(corruptions(pool), label='corruptions') if pool else []
    params, conn = _fresh(pg_workspace, template)
    args = data.draw(module_args(module, hints, fixed=params, connection_hostile=PG_CONNECTION_HOSTILE),
                     label='args')
    if draw_args:
        args = draw_args(args)
    check_mode = data.draw(st.booleans(), label='check_mode')
    state = dict(corruptions=names)
    if api is not None:
        state['api_policy'] = data.draw(st.sampled_from(POLICIES), label='api_policy')
        api.reset(state['api_policy'])
    assume(not known.matches(module, args, state, check_mode))
    try:
        corrupt(conn, pool or {}, names)
    except psycopg2.Error:
        assume(False)   # a combination that cannot be applied (a column of a dropped table)
    if prepare:
        prepare(conn, args, state)
    example = run_example(module, args, check_mode, state, pg_snapshotter(conn, detail_tables, api))
    example.assert_ok(INVARIANTS[module])


def _api_hints(api):
    return dict(api_url=st.just(api.url), api_token=st.just('hostile-token'), timeout=st.just('5s'))


@budget(25)
@given(data=st.data())
def test_approval_tasks(pg_workspace, api_standin, data):
    hints = dict(_api_hints(api_standin), tenant_id=st.one_of(st.none(), UUIDS),
                 operators=st.one_of(st.none(), st.just(['operator1.t1.s%s@cerniq.invalid' % SEED]),
                                     st.just(['nobody@cerniq.invalid'])),
                 fallback_escalate_to=st.sampled_from([None, 'manager2.t1.s%s@cerniq.invalid' % SEED]),
                 limit=st.one_of(st.none(), st.integers(1, 4)),
                 min_confidence=st.sampled_from([0.5, 0.9, 1.0]), due_within=st.sampled_from(['0s', '2h', '70 days']),
                 tasks_table=st.sampled_from(['approval_tasks'] * 4 + TABLE_NAMES))
    hostile_run(pg_workspace, data, 'approval_tasks', CERNIQ, CERNIQ_CORRUPTIONS, hints,
                DETAIL_TABLES['approval_tasks'], api=api_standin)


@budget(10)
@given(data=st.data())
def test_approval_tasks_info(pg_workspace, data):
    hints = dict(tenant_id=st.one_of(st.none(), UUIDS), max_tasks_per_operator=st.integers(0, 20),
                 tasks_table=st.sampled_from(['approval_tasks'] * 4 + TABLE_NAMES))
    hostile_run(pg_workspace, data, 'approval_tasks_info', CERNIQ, CERNIQ_CORRUPTIONS, hints)


@budget(20)
@given(data=st.data())
def test_import_batch(pg_workspace, data):
    hostile_run(pg_workspace, data, 'import_batch', CERNIQ, CERNIQ_CORRUPTIONS, IMPORT_HINTS,
                DETAIL_TABLES['import_batch'])


IMPORT_HINTS = dict(tenant_id=st.one_of(st.none(), UUIDS), stuck_after=st.sampled_from(['30m', '1m', '70 days']),
                    ids=st.one_of(st.none(), st.just([]), st.just(['00000000-0000-0000-0000-000000000000'])),
                    batches_table=st.sampled_from(['bronze_import_batches'] * 4 + ['ops.bronze_import_batches',
                                                                                   'missing']))


@budget(10)
@given(data=st.data())
def test_import_batch_info(pg_workspace, data):
    hostile_run(pg_workspace, data, 'import_batch_info', CERNIQ, CERNIQ_CORRUPTIONS, IMPORT_HINTS)


@budget(20)
@given(data=st.data())
def test_quality_scores(pg_workspace, api_standin, data):
    hints = dict(_api_hints(api_standin), tenant_id=st.one_of(st.none(), UUIDS), batch_size=st.integers(1, 4),
                 limit=st.one_of(st.none(), st.integers(1, 5)), retrigger_after=st.sampled_from(['0s', '1h']),
                 enrichment_statuses=st.sampled_from([['complete'], ['complete', 'pending'], ['x']]))
    hostile_run(pg_workspace, data, 'quality_scores', CERNIQ, CERNIQ_CORRUPTIONS, hints,
                DETAIL_TABLES['quality_scores'], api=api_standin)


@budget(10)
@given(data=st.data())
def test_quality_scores_info(pg_workspace, data):
    hints = dict(tenant_id=st.one_of(st.none(), UUIDS),
                 enrichment_statuses=st.sampled_from([['complete'], ['complete', 'pending'], ['x']]))
    hostile_run(pg_workspace, data, 'quality_scores_info', CERNIQ, CERNIQ_CORRUPTIONS, hints)


TASK_TABLES = ['approval_tasks', 'approval_tasks', 'users', 'missing', 'pg_catalog.pg_class', '"odd name"']


@st.composite
def maintenance_task(draw):
    """A task naming exactly one of table or index (a hostile one may name both or neither)."""
    action = draw(st.sampled_from(['vacuum', 'analyze', 'reindex', 'drop_invalid_index']))
    task = dict(action=action)
    usual = dict(drop_invalid_index='index', reindex=draw(st.sampled_from(['table', 'index']))).get(action, 'table')
    target = draw(st.sampled_from([usual] * 4 + ['table', 'index', 'both', 'neither']))
    if target in ('table', 'both'):
        task['table'] = draw(st.sampled_from(TASK_TABLES))
    if target in ('index', 'both'):
        task['index'] = draw(st.sampled_from(['hostile_invalid', 'hostile_invalid', 'approval_tasks_pkey',
                                              'missing_idx', 'pg_class_oid_index']))
    task.update(draw(st.fixed_dictionaries({}, optional=dict(
        full=st.booleans(), freeze=st.booleans(), concurrently=st.booleans(), skip_locked=st.booleans()))))
    return task


def maintenance_tasks():
    return st.lists(maintenance_task(), min_size=1, max_size=3)


@budget(20)
@given(data=st.data())
def test_pg_maintenance(pg_workspace, data):
    hints = dict(tasks=maintenance_tasks(), targets=st.sampled_from(['tasks', 'tasks', 'auto']),
                 lock_wait_budget=st.sampled_from(['1s', '5s']), statement_timeout=st.sampled_from(['30s', '10m']),
                 cleanup_budget=st.sampled_from(['5s']), schemas=st.sampled_from([None, ['public'], ['ops', 'public']]))

    def auto_without_tasks(args):   # targets=auto takes no tasks (a hostile draw may still give both)
        if args.get('targets') == 'auto' and data.draw(st.sampled_from([True, True, False]), label='auto alone'):
            args['tasks'] = []
        return args
    hostile_run(pg_workspace, data, 'pg_maintenance', CERNIQ, CERNIQ_CORRUPTIONS, hints, prepare=invalid_index,
                draw_args=auto_without_tasks)


ORPHAN_CHECKS = [
    [], [dict(name='q', query='SELECT count(*) FROM users')],
    [dict(name='fk', child_table='bronze_contacts', child_column='import_batch_id', parent_table='bronze_import_batches',
          parent_column='id')],
    [dict(name='writes', query='DELETE FROM users RETURNING 1')], [dict(name='two', query='SELECT 1; SELECT 2')],
    [dict(query='SELECT 1')], [dict(name='bad', child_table='missing', child_column='x', parent_table='users',
                                    parent_column='id')],
]


@budget(15)
@given(data=st.data())
def test_pg_health_info(pg_workspace, data):
    hints = dict(orphan_checks=st.sampled_from(ORPHAN_CHECKS), schemas=st.sampled_from([None, ['public'], ['nope']]))
    hostile_run(pg_workspace, data, 'pg_health_info', CERNIQ, CERNIQ_CORRUPTIONS, hints, prepare=invalid_index)


QUEUE_READS = [
    {'silver:score:quality': dict(exists=True, counts=dict(wait=3, active=1, prioritized=0, paused=0, delayed=2,
                                                           completed=10, failed=1))},
    {'q': dict(exists=False)}, {'q': dict(counts=dict(wait=-1))}, {'q': dict(counts=dict(wait=2 ** 63))},
    {'q': dict(counts='many')}, {'q': 'not a mapping'}, {'q\x00': dict(counts=dict(wait=1))},
    {'ț' * 200: dict(counts=dict(wait='7'))}, {}, {'a': dict(counts=dict(wait=1)), 'b': dict(counts=dict(failed=2))},
]


@budget(12)
@given(data=st.data())
def test_cerniq_queue_stats(pg_workspace, data):
    hints = dict(queues=st.sampled_from(QUEUE_READS),
                 table=st.sampled_from(['bullmq_queue_stats'] * 4 + ['missing', 'users', 'public.bullmq_queue_stats']))
    hostile_run(pg_workspace, data, 'cerniq_queue_stats', CERNIQ, CERNIQ_CORRUPTIONS, hints)


@budget(12)
@given(data=st.data())
def test_capacity_info(pg_workspace, data):
    hints = dict(period=st.sampled_from(['1d', '30 days', '6w', '12h', None]),
                 measurements=st.sampled_from([{}, dict(queue_depth=5, memory=50), dict(disk='full'),
                                               dict(memory=float('nan'))]),
                 thresholds=st.sampled_from([{}, dict(memory=dict(warning=1, critical=2, action='x')),
                                             dict(memory=dict(warning='a')), dict(nope=1)]))
    hostile_run(pg_workspace, data, 'capacity_info', CERNIQ, CERNIQ_CORRUPTIONS, hints)


MIGRATIONS = [
    [dict(name='900_table.sql', sql='CREATE TABLE hostile_new (id int)')],
    [dict(name='901_bad.sql', sql='CREATE TABLE (')],
    [dict(name='902_a.sql', sql='CREATE TABLE hostile_a (id int)'), dict(name='903_fails.sql', sql='SELECT 1/0')],
    [dict(name='904_dup.sql', sql='SELECT 1'), dict(name='904_dup.sql', sql='SELECT 2')],
    [dict(name='', sql='SELECT 1')], [dict(name='905_empty.sql', sql='')],
    [dict(name='906_txn.sql', sql='COMMIT; CREATE TABLE hostile_escape (id int)')],
    [dict(name='907_nul.sql', sql='SELECT 1 -- \x00')],
]


@budget(15)
@given(data=st.data())
def test_cerniq_schema(pg_workspace, data):
    template = data.draw(st.sampled_from([EMPTY, CERNIQ]), label='template')
    hints = dict(migrations=st.sampled_from(MIGRATIONS), path=st.sampled_from([None]),
                 table=st.sampled_from(['schema_migrations'] * 3 + ['ops.migrations', 'users', '"x"."y"."z"']))
    hostile_run(pg_workspace, data, 'cerniq_schema', template, CERNIQ_CORRUPTIONS if template == CERNIQ else {},
                hints)


SAFE_SIZES = dict(scale=5, tenants=5, overdue_tasks=500, overloaded_tasks=500, missing_scores=500, delayed_jobs=500,
                  retention_due_contacts=2000, retention_due_log_rows=5000)


def unbounded_size(args):
    """Sizes the module accepts without an upper bound and would insert without end (a known failure)."""
    return [name for name, limit in SAFE_SIZES.items() if isinstance(args.get(name), (int, float))
            and not isinstance(args.get(name), bool) and not args[name] <= limit]


@budget(12)
@given(data=st.data())
def test_cerniq_synthetic_data(pg_workspace, redis_workspace, data):
    template = data.draw(st.sampled_from([CERNIQ, EMPTY]), label='template')
    redis_params, _client = redis_workspace.fresh()
    hints = dict(seed=st.sampled_from([SEED, SEED, '14', '', 'ț']), scale=st.sampled_from([0.01, 0.02]),
                 tenants=st.integers(1, 2), incidents=st.lists(st.sampled_from(cerniq_synthetic.INCIDENTS), max_size=2,
                                                               unique=True),
                 overdue_tasks=st.integers(0, 5), missing_scores=st.integers(0, 5), delayed_jobs=st.integers(0, 5),
                 inject_redis=st.booleans(),
                 reference_time=st.sampled_from([None, '2026-01-01T00:00:00Z', 'not a time', 'infinity']))

    def with_redis(args):
        args.update((k, v) for k, v in redis_params.items() if k not in args)
        assume(not unbounded_size(args))
        return args
    hostile_run(pg_workspace, data, 'cerniq_synthetic_data', template, {}, hints, draw_args=with_redis)


# Weighted toward what works (repeated values), so runs get past the checks and move rows.
SOURCES = ['events'] * 6 + ['pt'] * 2 + ['pt_old', 'public.events', 'missing', '"events"']
ARCHIVES = [None] * 2 + ['events_archive'] * 6 + ['new_archive', 'events', 'pt', 'pt_old', 'pt_archive']
OLDER = ['90 days'] * 3 + ['30 days', '1 day', '90', '-90 days', '90 days ago', '1 second', 'infinity', '0', 'garbage']
CUTOFFS = ['2026-06-01'] * 3 + ['2020-01-01', '2999-01-01', 'infinity', '-infinity', 'tomorrow', 'garbage']
WHERES = [None] * 5 + ["status = 'done'", "status='done') OR (true", "status = 'done'; DELETE FROM events",
                       '(', 'true', 'note IS NULL', "note = 'x)'"]


@budget(30)
@given(data=st.data())
def test_pg_archive(pg_workspace, data):
    hints = dict(source_table=st.sampled_from(SOURCES), archive_table=st.sampled_from(ARCHIVES),
                 older_than=st.sampled_from(OLDER), cutoff=st.sampled_from(CUTOFFS), where=st.sampled_from(WHERES),
                 timestamp_column=st.sampled_from(['created_at'] * 8 + ['ts_text', 'status', 'missing']),
                 batch_size=st.integers(1, 50), min_batch_size=st.integers(1, 10), max_batch_size=st.integers(10, 100),
                 lock_retries=st.integers(0, 2), time_budget=st.sampled_from([None, '30s']),
                 create_archive=st.booleans())

    def one_cutoff(args):   # older_than or cutoff, as the module requires (hostile draws may break that)
        if 'older_than' in args and 'cutoff' in args and data.draw(st.booleans(), label='keep older_than'):
            args.pop('cutoff')
        elif 'older_than' in args and 'cutoff' in args:
            args.pop('older_than')
        return args
    hostile_run(pg_workspace, data, 'pg_archive', ARCHIVE, ARCHIVE_CORRUPTIONS, hints,
                DETAIL_TABLES['pg_archive'], prepare=archive_prepare, draw_args=one_cutoff)
