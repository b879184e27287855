# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply versioned SQL migrations and record them in a ``schema_migrations`` table.

Plain Python (no Ansible imports). A migration is ``(name, sql)``; names look like
``001_core_tables.sql`` and are applied in name order. Each pending migration runs in
its own transaction together with the row that records it, under a transaction-level
advisory lock, so two concurrent runs never apply the same file twice and a failing
file leaves nothing behind. An applied migration whose text has changed since is an
error (``ChecksumMismatch``) unless the caller allows it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import quote_relation

MIGRATION_NAME = re.compile(r'^[0-9]{3,}_[A-Za-z0-9_.-]+\.sql$')
# Arbitrary constant: the advisory lock key shared by every cerniq.ops migration run.
ADVISORY_LOCK_KEY = 7305129001


class MigrationError(EngineError):
    """Bad migration input or a migration that failed; the message says which file."""


class ChecksumMismatch(MigrationError):
    """An applied migration's text differs from the recorded one."""


def checksum(sql):
    return hashlib.sha256(sql.encode('utf-8')).hexdigest()


def normalize_migrations(migrations):
    """Validate ``[{'name':..., 'sql':...}]`` (or tuples); returns a name-sorted list of dicts."""
    seen = {}
    for item in migrations or []:
        if isinstance(item, (list, tuple)):
            name, sql = item
        else:
            name, sql = item.get('name'), item.get('sql')
        name = os.path.basename(name or '')
        if not MIGRATION_NAME.match(name):
            raise MigrationError('invalid migration name %r: expected NNN_description.sql' % name)
        if sql is None or not sql.strip():
            raise MigrationError('migration %s is empty' % name)
        if name in seen:
            raise MigrationError('migration %s given twice' % name)
        seen[name] = dict(name=name, sql=sql, checksum=checksum(sql))
    return [seen[name] for name in sorted(seen)]


def load_migrations_dir(path):
    """Read every ``NNN_*.sql`` file of a directory."""
    if not os.path.isdir(path):
        raise MigrationError('migrations directory %s does not exist' % path)
    items = []
    for name in sorted(os.listdir(path)):
        if MIGRATION_NAME.match(name):
            with open(os.path.join(path, name), 'r', encoding='utf-8') as handle:
                items.append(dict(name=name, sql=handle.read()))
    return normalize_migrations(items)


def _table(table):
    return quote_relation(table)


def ensure_table(cur, table='schema_migrations'):
    cur.execute(
        'CREATE TABLE IF NOT EXISTS %s ('
        ' name text PRIMARY KEY,'
        ' checksum text NOT NULL,'
        ' applied_at timestamptz NOT NULL DEFAULT now(),'
        ' applied_by text NOT NULL DEFAULT current_user)' % _table(table))


def applied_migrations(cur, table='schema_migrations'):
    """``{name: checksum}`` of recorded migrations; empty when the table does not exist yet."""
    cur.execute('SELECT to_regclass(%s)', (_table(table),))
    relation = cur.fetchone()[0]
    if relation is None:
        return {}
    # An existing relation of another shape (a typo naming an application table) is refused, not written to.
    cur.execute("SELECT array_agg(attname::text) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped", (relation,))
    columns = set(cur.fetchone()[0] or [])
    if not {'name', 'checksum'} <= columns:
        raise MigrationError('table %s exists but is not a migrations table (it has no name and checksum columns); '
                             'nothing was applied' % table)
    cur.execute('SELECT name, checksum FROM %s' % _table(table))
    return dict(cur.fetchall())


def plan(conn, migrations, table='schema_migrations'):
    """What would happen: ``dict(pending=[names], applied=[names], changed=[names])``."""
    migrations = normalize_migrations(migrations)
    with conn.cursor() as cur:
        recorded = applied_migrations(cur, table)
    if not conn.autocommit:
        conn.rollback()
    result = dict(pending=[], applied=[], changed=[])
    for item in migrations:
        if item['name'] not in recorded:
            result['pending'].append(item['name'])
        elif recorded[item['name']] != item['checksum']:
            result['changed'].append(item['name'])
        else:
            result['applied'].append(item['name'])
    return result


def apply(conn, migrations, table='schema_migrations', check_mode=False, allow_changed=False):
    """Apply pending migrations in name order; returns ``dict(applied=[...], already_applied=[...],
    changed_checksum=[...], changed=bool)``. Raises ``MigrationError`` naming the failing file
    (earlier files of the run stay applied and recorded).

    ``conn`` is a psycopg2 connection; its autocommit setting is restored afterwards.
    """
    migrations = normalize_migrations(migrations)
    current = plan(conn, migrations, table)
    if current['changed'] and not allow_changed:
        raise ChecksumMismatch('applied migration(s) changed since they were applied: %s; '
                               'add a new migration instead of editing an applied one'
                               % ', '.join(current['changed']))
    result = dict(applied=[], already_applied=list(current['applied']),
                  changed_checksum=list(current['changed']), pending=list(current['pending']))
    if check_mode:
        result['applied'] = list(current['pending'])
        result['changed'] = bool(current['pending'])
        return result
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        for item in migrations:
            if item['name'] not in current['pending']:
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute('SELECT pg_advisory_xact_lock(%s)', (ADVISORY_LOCK_KEY,))
                    ensure_table(cur, table)
                    cur.execute('SELECT 1 FROM %s WHERE name = %%s' % _table(table), (item['name'],))
                    if cur.fetchone():
                        conn.rollback()
                        result['already_applied'].append(item['name'])
                        continue
                    cur.execute(item['sql'])
                    cur.execute('INSERT INTO %s (name, checksum) VALUES (%%s, %%s)' % _table(table),
                                (item['name'], item['checksum']))
                conn.commit()
            except Exception as error:  # psycopg2.Error and friends: roll back this file only
                conn.rollback()
                message = str(error).strip().splitlines()
                failure = MigrationError('migration %s failed and was rolled back: %s' % (
                    item['name'], message[0] if message else error.__class__.__name__))
                result['pending'] = [name for name in result['pending'] if name not in result['applied']]
                result['changed'] = bool(result['applied'])
                failure.result = result
                raise failure
            result['applied'].append(item['name'])
    finally:
        conn.autocommit = autocommit
    result['pending'] = [name for name in result['pending'] if name not in result['applied']]
    result['changed'] = bool(result['applied'])
    return result


def default_migrations_dir():
    """``schema/migrations`` of this collection when the collection files are on this host."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, '..', '..', '..', 'schema', 'migrations'))
