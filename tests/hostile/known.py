"""Failures the hostile layer found in modules other helpers are fixing (issue 13), until their fixes merge.

Each entry names the module, the issue-13 defect, the branch expected to fix it, a predicate recognising
the inputs that trigger it and one concrete example. While an entry is ``open``:
- the property tests ``assume`` its inputs away, so they keep hunting everything else;
- tests/hostile/test_known_failures.py runs its example, marked ``xfail(strict=True)``: the day the fix
  is merged the example passes, the strict xfail fails, and the lead sets ``open=False`` (the example then
  stays as a regression test and the property tests draw those inputs again).
"""


PG_MODULES = ('approval_tasks', 'approval_tasks_info', 'import_batch', 'import_batch_info', 'quality_scores',
              'quality_scores_info', 'pg_archive', 'pg_maintenance', 'pg_health_info', 'capacity_info', 'cerniq_schema',
              'cerniq_synthetic_data', 'pg_backup_verify', 'incident_info')
PG_CONNECTION = ('login_host', 'login_db', 'login_user', 'login_password', 'application_name', 'login_unix_socket',
                 'ssl_rootcert', 'ssl_cert', 'ssl_key')
REDIS_MODULES = ('bullmq_queue', 'bullmq_queue_info', 'circuit_breaker', 'circuit_breaker_info', 'redis_keys',
                 'redis_keys_info', 'cerniq_synthetic_data')


class Known:
    """``module``: a module name or a tuple of them; ``example``: dict(module, args, state, check_mode) run by
    test_known_failures.py (``args`` without the connection; ``state`` seeded as in the property test)."""

    def __init__(self, key, module, defect, branch, symptom, predicate, example, is_open=True):
        self.key, self.module, self.defect, self.branch = key, module, defect, branch
        self.symptom, self.predicate, self.example, self.open = symptom, predicate, example, is_open

    @property
    def reason(self):
        return '%s (issue 13 %s, %s): %s' % (self.module, self.defect, self.branch, self.symptom)


def _queue(prefix, name, jobs, version='bullmq:5.56.0'):
    return dict(prefix=prefix, name=name, version=version, paused=False, jobs=jobs, duplicate_active=[],
                wrong_keys=[], stalled_check=None)


def _target_has(args, state, corruptions):
    """Whether the queue ``args`` target holds a job with one of ``corruptions``."""
    for queue in state.get('queues', []):
        if (queue['prefix'], queue['name']) == (args.get('prefix', 'bull'), args.get('name')):
            return any(job[2] in corruptions for job in queue['jobs'])
    return False


def _refused_for(args, reasons):
    from tests.hostile.invariants import archive_refusals
    return any(word in found for found in archive_refusals(args) for word in reasons)


def _archive_case(args):
    return dict(module='pg_archive', template='hostile_tpl_archive', check_mode=False, state=dict(corruptions=[]),
                args=dict(dict(source_table='events', archive_table='events_archive'), **args))


KNOWN = [
    Known('redis-cluster-standalone', REDIS_MODULES, 'defect 12', 'redis_connection.py (h-bullmq or h-redis)',
          'redis_cluster=true against a standalone server is a RedisClusterException traceback',
          lambda args, state, check: args.get('redis_cluster') is True,
          dict(module='bullmq_queue_info', args=dict(redis_cluster=True), state=dict(queues=[], plain=[]),
               check_mode=False), is_open=False),
    Known('bullmq-wrong-type-job', 'bullmq_queue', 'defect 1', 'h-bullmq',
          'a job key of the wrong type part-way through a batch: WRONGTYPE, jobs already popped are in no state',
          lambda args, state, check: _target_has(args, state, ('string_key', 'list_key')),
          dict(module='bullmq_queue', args=dict(name='q3', prefix='cq', state='repaired'), check_mode=False,
               state=dict(plain=[], queues=[_queue('cq', 'q3', [
                   ('1', 'active', 'none'), ('2', 'active', 'string_key'), ('3', 'active', 'none')])])), is_open=False),
    Known('bullmq-non-numeric-counter', 'bullmq_queue', 'defect 1 and 12', 'h-bullmq',
          'a job hash with a non-numeric stc (or other counter) loses the valid jobs of its batch; check mode raises',
          lambda args, state, check: _target_has(args, state, ('bad_stc', 'bad_attempts', 'bad_times', 'empty_hash')),
          dict(module='bullmq_queue', args=dict(name='q3', prefix='cq', state='repaired', max_stalled_count=0),
               check_mode=False, state=dict(plain=[], queues=[_queue('cq', 'q3', [
                   ('1', 'active', 'none'), ('2', 'active', 'bad_stc'), ('3', 'active', 'none')])])), is_open=False),
    Known('pg-connection-nul', PG_MODULES, 'defect 12', 'pg_connection.py (h-pg)',
          'a NUL byte in a connection option (application_name, login_db ...) is a ValueError traceback',
          lambda args, state, check: any(isinstance(args.get(name), str) and '\x00' in args[name]
                                         for name in PG_CONNECTION),
          dict(module='pg_health_info', template='hostile_tpl_empty', args=dict(application_name='a\x00b'),
               check_mode=False, state=dict(corruptions=[])), is_open=False),
    Known('schema-table-of-another-shape', 'cerniq_schema', 'defect 12 (class)', 'not assigned to a helper',
          'table naming an existing table that is not a migrations table (users) is a psycopg2 traceback',
          lambda args, state, check: args.get('table', 'schema_migrations') != 'schema_migrations',
          dict(module='cerniq_schema', template='hostile_tpl_cerniq', check_mode=True, state=dict(corruptions=[]),
               args=dict(migrations=[dict(name='900_table.sql', sql='CREATE TABLE hostile_new (id int)')],
                         table='users')), is_open=False),
    Known('synthetic-bad-reference-time', 'cerniq_synthetic_data', 'defect 12 (class)', 'not assigned to a helper',
          "a reference_time that is not a time ('not a time', 'infinity') is a psycopg2 traceback",
          lambda args, state, check: args.get('reference_time') not in (None, '2026-01-01T00:00:00Z'),
          dict(module='cerniq_synthetic_data', template='hostile_tpl_cerniq', check_mode=True,
               state=dict(corruptions=[]), args=dict(seed='13', scale=0.01, tenants=1,
                                                     reference_time='not a time')), is_open=False),
    Known('backup-tool-path', 'pg_backup_verify', 'defect 12 (class)', 'not assigned to a helper',
          "a pg_restore_path or psql_path that is not a program ('', 'a*b') is a PermissionError or "
          "FileNotFoundError traceback (pg_restore also lists a custom dump in check mode)",
          lambda args, state, check: args.get('pg_restore_path', 'pg_restore') != 'pg_restore'
          or args.get('psql_path', 'psql') != 'psql',
          dict(module='pg_backup_verify', template='hostile_tpl_cerniq', check_mode=True, superuser=True,
               state=dict(corruptions=[], backup='good'), args=dict(restore=True, pg_restore_path='a*b',
                                                                    scratch_db='hostile_restore')), is_open=False),
    Known('archive-cascade', 'pg_archive', 'defect 3', 'h-pg',
          'archiving deletes rows of other tables through ON DELETE CASCADE or a DELETE trigger, silently',
          lambda args, state, check: bool({'cascading foreign key', 'delete trigger'} & set(state['corruptions'])),
          dict(module='pg_archive', template='hostile_tpl_archive',
               args=dict(source_table='events', archive_table='events_archive', older_than='90 days'),
               check_mode=False, state=dict(corruptions=['cascading foreign key'])), is_open=False),
    Known('archive-unitless-or-future-cutoff', 'pg_archive', 'defect 2', 'h-pg',
          'older_than without a unit is read as seconds; a negative interval, "ago" or a cutoff such as 2999-01-01 or '
          'infinity puts the cutoff in the future, and the run archives rows newer than now',
          lambda args, state, check: _refused_for(args, ('no unit', 'in the future')),
          _archive_case(dict(older_than='-90 days')), is_open=False),
    Known('archive-unbalanced-where', 'pg_archive', 'defect 8', 'h-pg',
          "a where with unbalanced parentheses escapes the cutoff (status='done') OR (true moves every row)",
          lambda args, state, check: _refused_for(args, ('not a balanced',)),
          _archive_case(dict(older_than='90 days', where="status='done') OR (true")), is_open=False),
    Known('archive-own-partition-tree', 'pg_archive', 'defect 9', 'h-pg',
          'archiving a partition into its own parent (or the source into itself) never ends',
          lambda args, state, check: _refused_for(args, ('partition tree',)),
          _archive_case(dict(source_table='pt_old', archive_table='pt', older_than='1 day', partition_mode='batch',
                             time_budget='20s')), is_open=False),
    Known('archive-text-timestamp', 'pg_archive', 'defect 10', 'h-pg',
          "a text timestamp_column is accepted and compared as text ('0' and '1 day' move)",
          lambda args, state, check: _refused_for(args, ('is text',)),
          _archive_case(dict(older_than='90 days', timestamp_column='ts_text')), is_open=False),
]

# Reserved result keys still returned by modules of other branches (tests/unit/test_result_keys.py holds their
# strict xfail): ignored by the oracle while listed here.
RESERVED_OPEN = {}

# Keys modules return without documenting them in RETURN (the real output must match RETURN): ignored by the
# oracle while listed here; test_known_failures.py checks each set against RETURN (strict xfail).
UNDOCUMENTED = {}


def matches(module, args, state, check_mode):
    """Whether an open known failure covers this example (so the property test looks elsewhere)."""
    return any(entry.open and module in _names(entry.module) and entry.predicate(args, state, check_mode)
               for entry in KNOWN)


def _names(module):
    return (module,) if isinstance(module, str) else module
