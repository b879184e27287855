"""What a successful (or partly successful) run of each module must leave behind: nothing lost or
duplicated, nothing outside its target touched, a result that tells the truth. Used by the property
tests and by test_known_failures.py; ``snapshotter_for`` sets up a known-failure example's state.
"""

from collections import Counter

from tests.hostile.oracle import redis_snapshot
from tests.hostile.redis_states import STATES, job_view, seed


def _snapshotter(client, state):
    return lambda: dict(keys=redis_snapshot(client), jobs=job_view(client, state))


def _target_key(key, prefix, name):
    head = ('%s:%s:' % (prefix, name)).encode('utf-8')
    return isinstance(key, bytes) and key.startswith(head)


def _outside_unchanged(example, owned):
    """Problems: keys not ``owned(key)`` that changed, appeared or vanished."""
    before, after = example.before['keys'], example.after['keys']
    changed = [key for key in set(before) | set(after) if not owned(key[1]) and before.get(key) != after.get(key)]
    return ['changed keys it does not own: %s' % sorted(changed, key=repr)[:5]] if changed else []


def _counts(entry):
    return dict((kind, len(members)) for kind, members in entry.items() if isinstance(members, list))


def bullmq_invariant(example):
    args, result = example.args, example.result
    prefix, name = args.get('prefix', 'bull'), args.get('name')
    problems = _outside_unchanged(example, lambda key: _target_key(key, prefix, name))
    before = example.before['jobs'].get((prefix, name))
    after = example.after['jobs'].get((prefix, name))
    if before is None:
        return problems
    ids_before = Counter(i for members in before.values() if isinstance(members, list) for i in members)
    ids_after = Counter(i for members in after.values() if isinstance(members, list) for i in members)
    lost = ids_before - ids_after
    duplicated = [i for i in ids_after if ids_after[i] > max(ids_before.get(i, 0), 1)]
    if args.get('state') == 'cleaned':
        kind = args.get('clean_state', 'completed')
        outside = [i for i in lost if i not in before.get(kind, [])]
        if outside or sum(lost.values()) != result.get('deleted'):
            problems.append('cleaned %s: removed %s (outside %s: %s), reported deleted=%s' % (
                kind, sorted(lost), kind, outside, result.get('deleted')))
    elif lost:
        problems.append('jobs lost from every state: %s' % sorted(lost))
    if duplicated:
        problems.append('jobs duplicated: %s' % duplicated)
    new = set(ids_after) - set(ids_before)
    if new:
        problems.append('ids appeared from nowhere: %s' % sorted(new))
    if before != after and not result.get('changed'):
        problems.append('jobs moved but changed=false')
    reported = result.get('after') if isinstance(result.get('after'), dict) else {}
    actual = _counts(after)
    wrong = dict((kind, (reported[kind], actual.get(kind, 0))) for kind in STATES
                 if kind in reported and reported[kind] != actual.get(kind, 0))
    if wrong:
        problems.append('result "after" counts differ from the queue (reported, real): %s' % wrong)
    return problems


def read_only(example):
    return [] if example.before == example.after else ['a read-only module changed data']


def circuit_invariant(example):
    args = example.args
    templates = dict(state_key='circuit:{source}:state', failures_key='circuit:{source}:failures')
    templates.update((k, args[k]) for k in templates if isinstance(args.get(k), str) and args[k])
    sources = args.get('sources') or []
    owned = set(templates[k].replace('{source}', s).encode('utf-8') for k in templates for s in sources
                if isinstance(s, str))
    if args.get('state') != 'closed':   # refused: the module has no other state
        return read_only(example)
    problems = _outside_unchanged(example, lambda key: key in owned)
    grown = [k for k in example.after['keys'] if k not in example.before['keys']]
    if grown:
        problems.append('reset created keys: %s' % grown)
    if example.before != example.after and not example.result.get('changed'):
        problems.append('breakers changed but changed=false')
    return problems


def redis_keys_invariant(example):
    args, result = example.args, example.result
    matching = example.state['matching']
    db = args.get('redis_db', 0)
    removed = [key for key in example.before['keys'] if key not in example.after['keys']]
    problems = _outside_unchanged(example, lambda key: key in matching)
    problems += ['deleted a key of another database: %r' % (k,) for k in removed if k[0] != db]
    unmatched = [k for k in removed if k[1] not in matching]
    if unmatched:
        problems.append('deleted keys no pattern matches: %s' % unmatched[:5])
    if len(removed) != result.get('deleted', 0):
        problems.append('deleted %d keys, reported deleted=%s' % (len(removed), result.get('deleted')))
    every = example.state['keys_in_db']
    if removed and not args.get('allow_all') and every and matching >= every:
        problems.append('patterns %r match every key of the database and allow_all is false, yet %d keys were '
                        'deleted' % (args.get('patterns'), len(removed)))
    return problems


def _in_db(client, db, action):
    if not isinstance(db, int) or isinstance(db, bool) or not 0 <= db < 16:
        return set()
    client.execute_command('SELECT', db)
    try:
        return action()
    finally:
        client.execute_command('SELECT', 0)


def _matching(client, db, patterns):
    """The keys Redis itself matches with ``patterns`` (SCAN MATCH) in ``db``."""
    if not isinstance(patterns, list):
        return set()
    return _in_db(client, db, lambda: set(
        key for pattern in patterns if isinstance(pattern, str) and pattern
        for key in client.scan_iter(match=pattern.encode('utf-8', 'surrogateescape'), count=1000)))


def _keys_in(client, db):
    return _in_db(client, db, lambda: set(client.scan_iter(count=1000)))


def prepare_redis(client, module, args, state):
    """Seed ``state``; for redis_keys also record what Redis itself matches with the patterns."""
    seed(client, state)
    if module == 'redis_keys':
        db = args.get('redis_db', 0)
        state.update(matching=_matching(client, db, args.get('patterns')), keys_in_db=_keys_in(client, db))
    return _snapshotter(client, state)


INVARIANTS = dict(bullmq_queue=bullmq_invariant, bullmq_queue_info=read_only, circuit_breaker=circuit_invariant,
                  circuit_breaker_info=read_only, redis_keys=redis_keys_invariant, redis_keys_info=read_only)
REDIS_MODULES = ('bullmq_queue', 'bullmq_queue_info', 'circuit_breaker', 'circuit_breaker_info', 'redis_keys',
                 'redis_keys_info')


def worker_invariant(example):
    """The worker is never lost: exactly one container holds its name and runs, no renamed old one is left,
    and a successful run left it with every requested setting."""
    name = example.state['container']
    problems = []
    holders = [c for c in example.after if c[0] == name]
    if len(holders) != 1 or holders[0][2] != 'running':
        problems.append('the worker %s is not one running container afterwards: %s' % (name, example.after))
    if [c for c in example.after if c[0] != name]:
        problems.append('containers left beside the worker: %s' % [c for c in example.after if c[0] != name])
    env = example.result.get('env') or {}
    wanted = dict(entry.split('=', 1) for entry in example.args.get('env') or [] if '=' in entry)
    if example.succeeded and example.args.get('name') == name and env != wanted:
        problems.append('the run succeeded but the worker runs with %s, not %s' % (env, wanted))
    return problems


INVARIANTS['worker_container'] = worker_invariant


def snapshotter_for(request, case):
    """(connection params, snapshot callable) for a known-failure example, its state seeded."""
    if case['module'] in REDIS_MODULES:
        params, client = request.getfixturevalue('redis_workspace').fresh()
        return params, prepare_redis(client, case['module'], dict(params, **case['args']), case['state'])
    from tests.hostile import pg_states
    workspace = request.getfixturevalue('pg_workspace')
    workspace.template(case['template'], pg_states.TEMPLATES[case['template']])
    params, conn = workspace.fresh(case['template'])
    if case.get('superuser'):
        params = workspace.server.params(params['login_db'], superuser=True)
    if 'backup' in case['state']:
        params['path'] = str(request.getfixturevalue('backups') / case['state']['backup'])
    pool = pg_states.ARCHIVE_CORRUPTIONS if case['template'] == pg_states.ARCHIVE else pg_states.CERNIQ_CORRUPTIONS
    pg_states.corrupt(conn, pool, case['state'].get('corruptions', []))
    detail_tables = DETAIL_TABLES.get(case['module'], ())
    if case['module'] == 'pg_archive':
        pg_states.archive_prepare(conn, dict(params, **case['args']), case['state'])
    return params, pg_snapshotter(conn, detail_tables)


# --------------------------------------------------------------------------- PostgreSQL
def pg_snapshotter(conn, detail_tables=(), api=None):
    from tests.hostile.oracle import pg_snapshot
    from tests.hostile.pg_states import detail

    def snapshot():
        state = dict(pg=pg_snapshot(conn), rows=detail(conn, detail_tables))
        if api is not None:
            state['api'] = len(api.accepted())
        return state
    return snapshot


def _tables_changed(example, allowed=lambda name: False):
    before, after = example.before['pg']['tables'], example.after['pg']['tables']
    return sorted(name for name in set(before) | set(after) if not allowed(name) and before.get(name) != after.get(name))


def _schema_changes(example, allowed=lambda line: False):
    before, after = example.before['pg']['schema'], example.after['pg']['schema']
    return sorted(set(line for line in set(before) ^ set(after) if not allowed(line)))


def _rows_changed(example, table):
    before, after = example.before['rows'].get(table, {}), example.after['rows'].get(table, {})
    return set(i for i in set(before) | set(after) if before.get(i) != after.get(i))


def _only(example, tables, expected_by_table):
    """Data changed only in ``tables``; rows neither added nor removed there; the rows that changed are
    exactly ``expected_by_table[table]`` (a set of ids, or a count)."""
    problems = []
    other = _tables_changed(example, lambda name: name.split('.')[-1].strip('"') in tables)
    if other:
        problems.append('changed tables outside its target: %s' % other)
    if _schema_changes(example):
        problems.append('changed the schema: %s' % _schema_changes(example)[:4])
    for table, expected in expected_by_table.items():
        changed = _rows_changed(example, table)
        before, after = example.before['rows'].get(table, {}), example.after['rows'].get(table, {})
        if set(before) != set(after):
            problems.append('%s: rows added or removed: %s' % (table, sorted(set(before) ^ set(after))[:5]))
        wanted = expected if isinstance(expected, int) else len(expected)
        if not isinstance(expected, int):
            changed = set(_as_ansible_shows(example, key) for key in changed)
        if len(changed) != wanted or (not isinstance(expected, int) and changed != set(expected)):
            problems.append('%s: %d rows changed, the result reports %d' % (table, len(changed), wanted))
    if (any(_rows_changed(example, t) for t in expected_by_table) or other) and not example.result.get('changed'):
        problems.append('data changed but changed=false')
    return problems


# Options whose values Ansible masks wherever they appear in a result (no_log): a drawn API token of '90'
# turns a task id 'a1b290c3...' into 'a1b2********c3...' in the result, as Ansible's remove_values does.
NO_LOG_OPTIONS = ('login_password', 'redis_password', 'api_token', 'api_key')
MASK = '********'


def _as_ansible_shows(example, text):
    """``text`` as it appears in the module's result, once Ansible has masked the no_log option values."""
    if not isinstance(text, str):
        return text
    for name in NO_LOG_OPTIONS:
        secret = example.args.get(name)
        if isinstance(secret, str) and secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def _ids(items):
    return set(item['id'] for item in items or [] if isinstance(item, dict) and 'id' in item)


def approval_invariant(example):
    result, state = example.result, example.args.get('state')
    tables = ('approval_tasks', 'approval_tasks_data', 'approval_task_escalations')
    if state == 'escalated':
        escalated = result.get('escalated') or []
        problems = _only(example, tables, dict(approval_tasks=_ids(escalated)))
        added = _count(example, 'approval_task_escalations', after=True) - _count(example, 'approval_task_escalations')
        if added != len(escalated):
            problems.append('%d escalation records added for %d escalations' % (added, len(escalated)))
        accepted = example.after.get('api', 0) - example.before.get('api', 0)
        if accepted != len(escalated):
            problems.append('the API accepted %d escalations, %d recorded' % (accepted, len(escalated)))
        return problems
    key = state if state in ('released', 'approved') else None
    return _only(example, tables, dict(approval_tasks=_ids(result.get(key)) if key else set()))


def _count(example, table, after=False):
    tables = (example.after if after else example.before)['pg']['tables']
    found = [value[0] for name, value in tables.items() if name.split('.')[-1].strip('"') == table]
    return found[0] if found else 0


def import_invariant(example):
    cancelled = example.result.get('cancelled') if example.args.get('state') == 'cancelled' else []
    return _only(example, ('bronze_import_batches',), dict(bronze_import_batches=_ids(cancelled)))


def quality_invariant(example):
    result, state = example.result, example.args.get('state')
    count = dict(reset=result.get('reset_count', 0), triggered=result.get('requested_count', 0)).get(state, 0)
    problems = _only(example, ('silver_companies',), dict(silver_companies=count if isinstance(count, int) else -1))
    if state == 'triggered':
        accepted = example.after.get('api', 0) - example.before.get('api', 0)
        batches = len(result.get('batches') or [])
        if accepted != batches:
            problems.append('the API accepted %d batches, %d recorded' % (accepted, batches))
    return problems


def pg_read_only(example):
    return [] if example.before == example.after else [
        'a read-only module changed data: %s' % describe_pg(example)]


def describe_pg(example):
    from tests.hostile.oracle import describe_change
    return describe_change(example.before['pg'], example.after['pg'])


def maintenance_invariant(example):
    problems = []
    if _tables_changed(example):
        problems.append('maintenance changed table data: %s' % _tables_changed(example))
    other = _schema_changes(example, lambda line: line.startswith('index '))
    if other:
        problems.append('maintenance changed more than indexes: %s' % other[:4])
    if example.before['pg']['databases'] != example.after['pg']['databases']:
        problems.append('databases changed')
    return problems


def schema_invariant(example):
    changed = _tables_changed(example, lambda name: 'schema_migrations' in name or name not in
                              example.before['pg']['tables'])
    return ['migrations changed rows of existing tables: %s' % changed] if changed else []


def synthetic_invariant(example):
    before, after = example.before['pg']['tables'], example.after['pg']['tables']
    lost = sorted(name for name in before if after.get(name, (0,))[0] < before[name][0])
    return ['rows lost from %s' % lost] if lost else []


# pg_archive: what the "archive/purge that refuses the dangerous cases" means for a successful run.
PARTITION_TREE = ('pt', 'pt_old', 'pt_mid', 'pt_new', 'pt_default')
TEXT_COLUMNS = ('ts_text', 'status', 'note', 'payload')


def balanced(sql):
    """Whether ``sql`` never closes a parenthesis it did not open (quotes honoured)."""
    depth, quote = 0, None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
        elif char in ("'", '"'):
            quote = char
        elif char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and quote is None


def _plain(name):
    return name.split('.')[-1].strip('"') if isinstance(name, str) else name


def archive_refusals(args):
    """The reasons the issue says a run with ``args`` must be refused (``[]`` when it may run)."""
    import re
    reasons = []
    older = args.get('older_than')
    if isinstance(older, str) and re.match(r'^\s*[-+]?\d+(\.\d+)?\s*$', older):
        reasons.append('older_than %r has no unit' % older)
    if isinstance(older, str) and (older.strip().startswith('-') or 'ago' in older):
        reasons.append('older_than %r puts the cutoff in the future' % older)
    cutoff = args.get('cutoff')
    if isinstance(cutoff, str) and (cutoff.strip().lower() in ('infinity', '+infinity') or cutoff.startswith('2999')):
        reasons.append('cutoff %r is in the future' % cutoff)
    where = args.get('where')
    if isinstance(where, str) and not balanced(where):
        reasons.append('where %r is not a balanced expression' % where)
    if _plain(args.get('timestamp_column', 'created_at')) in TEXT_COLUMNS:
        reasons.append('timestamp_column %r is text' % args.get('timestamp_column'))
    source, archive = _plain(args.get('source_table')), _plain(args.get('archive_table'))
    if archive and (archive == source or (source in PARTITION_TREE and archive in PARTITION_TREE)):
        reasons.append('archive_table %r is the source or in its partition tree' % args.get('archive_table'))
    return reasons


def _ansible_true(value):
    """Whether Ansible reads ``value`` as true for a bool option ('yes', 'on', 1, ...)."""
    if isinstance(value, str):
        return value.strip().lower() in ('yes', 'on', '1', 'true', 'y', 't')
    return value is True or (isinstance(value, int) and value == 1)


def archive_invariant(example):
    args, result, state = example.args, example.result, example.state
    problems = ['ran although %s' % reason for reason in archive_refusals(args)]
    source, archive = _plain(args.get('source_table')), _plain(args.get('archive_table'))
    family = set([source, archive, 'new_archive'] + (list(PARTITION_TREE) + ['pt_archive']
                                                     if source in PARTITION_TREE else []))
    allows = _ansible_true(args.get('allow_delete_side_effects'))
    other = _tables_changed(example, lambda name: _plain(name) in family or _plain(name).startswith('pt_'))
    if other and not allows:
        problems.append('changed tables it does not archive (cascade or trigger): %s' % other)
    rows = state.get('rows', {})
    before_ids, after_ids = example.before['rows'], example.after['rows']
    left = set(before_ids.get(source, {})) - set(after_ids.get(source, {}))
    future = sorted(i for i in left if rows.get(i, (0,))[0] > state.get('started', 0))
    if future:
        problems.append('archived rows newer than the run: %s' % future[:5])
    eligible = state.get('eligible')
    if eligible is not None and left - eligible:
        problems.append('moved rows outside the where condition: %s' % sorted(left - eligible)[:5])
    if archive and archive in after_ids and source != archive:
        arrived = _count(example, archive, after=True) - _count(example, archive)
        missing = left - set(after_ids[archive])
        if arrived != len(left) or missing:
            problems.append('%d rows left %s, %d reached %s (missing there: %s)' % (
                len(left), source, arrived, archive, sorted(missing)[:5]))
    moved = result.get('moved')
    if isinstance(moved, int) and not example.check_mode and moved != len(left) and source not in PARTITION_TREE:
        problems.append('moved=%s but %d rows left the source' % (moved, len(left)))
    return problems


def backup_invariant(example):
    problems = pg_read_only(example) if example.before['pg']['tables'] != example.after['pg']['tables'] else []
    if example.before['pg']['databases'] != example.after['pg']['databases']:
        problems.append('databases changed: %s -> %s' % (
            example.before['pg']['databases'], example.after['pg']['databases']))
    return problems


DETAIL_TABLES = dict(approval_tasks=('approval_tasks',), import_batch=('bronze_import_batches',),
                     quality_scores=('silver_companies',),
                     pg_archive=('events', 'events_archive', 'pt', 'pt_old', 'pt_mid', 'pt_new', 'pt_archive',
                                 'new_archive'))
INVARIANTS.update(approval_tasks=approval_invariant, import_batch=import_invariant, quality_scores=quality_invariant,
                  approval_tasks_info=pg_read_only, import_batch_info=pg_read_only, quality_scores_info=pg_read_only,
                  pg_maintenance=maintenance_invariant, pg_health_info=pg_read_only, capacity_info=pg_read_only,
                  incident_info=pg_read_only, pg_backup_verify=backup_invariant, cerniq_schema=schema_invariant,
                  cerniq_synthetic_data=synthetic_invariant, pg_archive=archive_invariant)


def _signoz_title(args):
    if isinstance(args.get('title'), str) and args['title']:
        return args['title']
    dashboard = args.get('dashboard')
    return dashboard.get('title') if isinstance(dashboard, dict) else None


def _titled(dashboards, title):
    return len([key for key in dashboards if dashboards[key]['data'].get('title') == title])


def signoz_invariant(example):
    """Only the dashboards of the module's title change; never a second dashboard of that title."""
    before, after, title = example.before, example.after, _signoz_title(example.args)
    changed = [key for key in set(before) | set(after) if before.get(key) != after.get(key)]
    problems = []
    others = [key for key in changed if (before.get(key) or after.get(key))['data'].get('title') != title]
    if others:
        problems.append('changed dashboards of another title: %s' % others)
    if _titled(after, title) > max(_titled(before, title), 1):
        problems.append('created another dashboard titled %r' % title)
    if changed and not example.result.get('changed'):
        problems.append('dashboards changed but changed=false')
    return problems


INVARIANTS['signoz_dashboard'] = signoz_invariant


def rules_invariant(example):
    """prometheus_rules: nothing outside the rules directory written; the requested files there, verbatim; files
    it was not given left alone unless it owns the directory (exclusive)."""
    import os
    args, before, after = example.args, example.before['tree'], example.after['tree']
    base, rules = example.state['base'], example.state['rules']
    inside = os.path.relpath(rules, base) + os.sep
    problems = []
    if after.get('absolute'):
        problems.append('wrote a file outside the rules directory (an absolute file name)')
    outside = sorted(k for k in set(before) | set(after) if k != 'absolute' and not k.startswith(inside)
                     and before.get(k) != after.get(k))
    if outside:
        problems.append('changed files outside the rules directory: %s' % outside)
    if os.path.realpath(str(args.get('rules_dir'))) == os.path.realpath(rules) and not example.check_mode:
        for entry in args.get('files') or []:
            got = after.get(inside + entry['name'], (None,))[0]
            if got != entry['content'].encode('utf-8'):
                problems.append('%s is not the content it was given' % entry['name'])
        if not args.get('exclusive'):
            given_names = set(inside + entry['name'] for entry in args.get('files') or [])
            touched = sorted(k for k in before if k.startswith(inside) and k not in given_names
                             and not k.endswith('.cerniq-rules-manifest.json') and before[k] != after.get(k))
            if touched:
                problems.append('changed files it was not given (exclusive is false): %s' % touched)
    if example.before != example.after and not example.result.get('changed'):
        problems.append('files or loaded rules changed but changed=false')
    return problems


def _silence_owner(args):
    return args.get('created_by', 'cerniq.ops'), args.get('comment')


def silence_invariant(example):
    """Silences of another creator or comment are never touched; a run creates at most one silence, its own."""
    owner = _silence_owner(example.args)
    before, after = example.before, example.after
    problems = []
    others = sorted(i for i in set(before) & set(after) if before[i][3:5] != owner and before[i] != after[i])
    if others:
        problems.append('changed silences of another creator or comment: %s' % others)
    new = [i for i in after if i not in before]
    if [i for i in new if after[i][3:5] != owner] or len(new) > 1:
        problems.append('created silences %s (owner %s)' % ([after[i][3:5] for i in new], owner))
    if before != after and not example.result.get('changed'):
        problems.append('silences changed but changed=false')
    return problems


def read_only_state(example):
    return [] if example.before == example.after else ['a read-only module changed state']


def queue_stats_invariant(example):
    """cerniq_queue_stats: only its table changes, one row per queue read at most added."""
    problems = []
    other = _tables_changed(example, lambda name: _plain(name) == 'bullmq_queue_stats')
    if other:
        problems.append('changed tables outside bullmq_queue_stats: %s' % other)
    added = _count(example, 'bullmq_queue_stats', after=True) - _count(example, 'bullmq_queue_stats')
    queues = example.args.get('queues')
    if added < 0 or added > (len(queues) if isinstance(queues, dict) else 0):
        problems.append('bullmq_queue_stats went from %d to %d rows' % (
            _count(example, 'bullmq_queue_stats'), _count(example, 'bullmq_queue_stats', after=True)))
    return problems


INVARIANTS.update(prometheus_rules=rules_invariant, alertmanager_silence=silence_invariant,
                  alertmanager_silence_info=read_only_state, cerniq_queue_stats=queue_stats_invariant)
