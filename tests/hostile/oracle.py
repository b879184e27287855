"""The oracle of the hostile layer: snapshots of the data before and after a run, and the verdict.

- ``redis_snapshot``: every key of every database with its type and ``DUMP`` (its full value) and whether
  it has a TTL.
- ``pg_snapshot``: per table of the database, the row count, a checksum of the ids and a checksum of
  the rows; the schema (columns, indexes and their validity, constraints, triggers) and the list of
  databases of the cluster.
- ``verdict``: what every run must satisfy - a result in JSON, never a traceback, a failure is one line,
  no key Ansible reserves, every key documented in RETURN, and nothing changed by a check-mode run or a
  run that failed without reporting a change. A module's own invariant (nothing lost or duplicated)
  is checked by the test on top of it.
"""

import json

from tests.hostile.argspec import documentation
from cerniq_testkit.results import ADDED_BY_ANSIBLE, documented_keys, reserved_key_misuse, traceback_in

# Keys a module may return besides those it documents: Ansible's own, with their meaning.
STANDARD_KEYS = ADDED_BY_ANSIBLE | {'diff', 'exception'}


def redis_snapshot(client):
    """``{(db, key): (type, value, has_ttl)}`` over every database of the server.

    The value is the key's full content in a canonical form: ``DUMP`` is not canonical for keys in a
    hashtable encoding - reads alone can make Redis rehash them incrementally, and ``DUMP`` then lists the
    same fields in another order (the layer's long hunt found this: a read-only run "changed" a job).
    """
    state = {}
    info = client.info('keyspace')
    for name in info:
        db = int(name[2:])
        client.execute_command('SELECT', db)
        try:
            for key in client.scan_iter(count=1000):
                kind = client.type(key)
                state[(db, key)] = (kind, _content(client, key, kind), client.pttl(key) > 0)
        finally:
            client.execute_command('SELECT', 0)
    return state


def _content(client, key, kind):
    if kind == b'string':
        return client.get(key)
    if kind == b'list':
        return tuple(client.lrange(key, 0, -1))
    if kind == b'hash':
        return tuple(sorted(client.hgetall(key).items()))
    if kind == b'set':
        return tuple(sorted(client.smembers(key)))
    if kind == b'zset':
        return tuple(sorted(client.zrange(key, 0, -1, withscores=True)))
    if kind == b'stream':
        return tuple(client.xrange(key, count=100000))
    return client.dump(key)


TABLES_SQL = """
SELECT c.oid::regclass::text, c.relkind, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
       AND a.attname = 'id' AND a.attnum > 0 AND NOT a.attisdropped)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
ORDER BY 1"""
SCHEMA_SQL = """
SELECT 'column ' || attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE attnum > 0 AND NOT attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
UNION ALL
SELECT 'index ' || i.indexrelid::regclass || ' on ' || i.indrelid::regclass || ' valid=' || i.indisvalid
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
UNION ALL
SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'partition ' || inhrelid::regclass || ' of ' || inhparent::regclass FROM pg_inherits
ORDER BY 1"""


def pg_snapshot(conn):
    """``dict(tables={name: (rows, id_checksum, row_checksum)}, schema=[...], databases=[...])``."""
    tables = {}
    with conn.cursor() as cur:
        cur.execute(TABLES_SQL)
        for name, kind, has_id in cur.fetchall():
            if kind == 'p':   # a partitioned parent holds no rows of its own; its partitions are listed
                continue
            key = 't.id::text' if has_id else "''"
            cur.execute("SELECT count(*), md5(string_agg(%s, ',' ORDER BY %s)), "
                        "md5(string_agg(t::text, '|' ORDER BY t::text)) FROM ONLY %s t" % (key, key, name))
            tables[name] = cur.fetchone()
        cur.execute(SCHEMA_SQL)
        schema = [row[0] for row in cur.fetchall()]
        cur.execute('SELECT datname FROM pg_database ORDER BY 1')
        databases = [row[0] for row in cur.fetchall()]
    return dict(tables=tables, schema=schema, databases=databases)


def ids(conn, table, column='id'):
    """The multiset (sorted list) of a table's ids, for invariants that follow rows between tables."""
    with conn.cursor() as cur:
        cur.execute('SELECT %s::text FROM %s ORDER BY 1' % (column, table))
        return [row[0] for row in cur.fetchall()]


def describe_change(before, after):
    """A short text naming what differs between two snapshots (for failure messages)."""
    if isinstance(before, dict) and isinstance(after, dict) and set(before) >= {'tables', 'schema'}:
        parts = ['table %s: %s -> %s' % (name, before['tables'].get(name), after['tables'].get(name))
                 for name in sorted(set(before['tables']) | set(after['tables']))
                 if before['tables'].get(name) != after['tables'].get(name)]
        parts += ['schema -%s' % line for line in before['schema'] if line not in after['schema']]
        parts += ['schema +%s' % line for line in after['schema'] if line not in before['schema']]
        parts += ['databases %s -> %s' % (before['databases'], after['databases'])] \
            if before['databases'] != after['databases'] else []
        return '; '.join(parts[:12])
    if isinstance(before, dict) and set(before) == {'keys', 'jobs'}:
        moved = []
        for queue, states in before['jobs'].items():
            later = after['jobs'].get(queue, {})
            moved += ['%s %s: %s -> %s' % (queue, kind, states.get(kind), later.get(kind))
                      for kind in sorted(set(states) | set(later)) if states.get(kind) != later.get(kind)]
        return '; '.join(moved[:8] + [describe_change(before['keys'], after['keys'])])
    changed = sorted(set(k for k in set(before) | set(after) if before.get(k) != after.get(k)), key=repr)
    return 'keys changed: %s' % ', '.join(repr(k) for k in changed[:12])


def _texts(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple, dict)):
        items = list(value.keys()) + list(value.values()) if isinstance(value, dict) else value
        for item in items:
            yield from _texts(item)


def _without_inputs(msg, args):
    """``msg`` without the input texts it quotes: a line break the caller put in a value is not the
    module's (a traceback or a multi-line dump is)."""
    for text in sorted(set(t for t in _texts(args) if '\n' in t), key=len, reverse=True):
        msg = msg.replace(text, '')
    return msg


def verdict(module, result, check_mode, before, after, timed_out=False, args=None):
    """The problems of one run that hold for every module (``[]`` when none)."""
    if timed_out:
        return ['the run did not end within its time limit']
    problems = []
    trace = traceback_in(result)
    if trace:
        problems.append('traceback: %s' % trace.strip().splitlines()[-1][:300])
    if result.rc not in (0, 1) or 'module printed no JSON' in str(result.get('msg')):
        problems.append('crash (rc=%s): %s' % (result.rc, str(result.get('msg'))[-300:]))
    if result.failed:
        msg = result.get('msg')
        if not isinstance(msg, str) or not msg.strip():
            problems.append('failure without a message')
        elif '\n' in _without_inputs(msg, args).strip() or 'MODULE FAILURE' in msg:
            problems.append('failure message is not one line: %r' % msg[:300])
    from tests.hostile.known import RESERVED_OPEN, UNDOCUMENTED
    tolerated = RESERVED_OPEN.get(module, set())
    problems += reserved_key_misuse(dict((k, v) for k, v in result.items() if k not in tolerated))
    undocumented = set(result) - documented_keys(module) - STANDARD_KEYS - UNDOCUMENTED.get(module, set())
    if undocumented and not problems:
        problems.append('returns keys not documented in RETURN: %s' % sorted(undocumented))
    unchanged_expected = check_mode or (result.failed and not result.get('changed'))
    if unchanged_expected and before != after:
        problems.append('%s run changed data: %s' % (
            'check-mode' if check_mode else 'failed', describe_change(before, after)))
    return problems


def _short(value):
    if isinstance(value, str) and len(value) > 80:
        return '%s...(%d characters)' % (value[:40], len(value))
    if isinstance(value, list):
        return [_short(item) for item in value]
    return value


def report(module, args, check_mode, state, result, problems):
    """The record of a finding: module, arguments, server state, symptom."""
    shown = dict((k, _short(v)) for k, v in args.items() if 'password' not in k and 'token' not in k and 'key' != k)
    return '%s%s with %s\nstate: %s\nsymptom: %s\nresult: %s' % (
        module, ' (check mode)' if check_mode else '', json.dumps(shown, default=repr)[:1500], repr(state)[:1500],
        ' | '.join(p[:600] for p in problems), json.dumps(dict((k, v) for k, v in result.items()
                                                               if k != 'invocation'), default=repr)[:600])


__all__ = ['redis_snapshot', 'pg_snapshot', 'ids', 'verdict', 'report', 'describe_change', 'documentation']
