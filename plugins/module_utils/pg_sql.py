# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQL helpers shared by the PostgreSQL engines (internal): identifier quoting, short cursors.

Every engine quotes the table and schema names users give it with ``quote_relation`` and runs its
statements through these helpers instead of a private copy each. Plain Python; psycopg2 connections
are passed in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError


def relation(option, value, error=EngineError):
    """``value`` (``[schema.]table`` as a user wrote it) quoted for SQL, or ``error`` naming ``option``."""
    try:
        return quote_relation(value)
    except ValueError as problem:
        raise error('%s: %s' % (option, problem))


@contextlib.contextmanager
def explicit_transactions(conn):
    """A block that commits its own transactions (one per batch, say) on ``conn``.

    Autocommit is off inside; when the block raises, the open transaction is rolled back before the error
    goes on (nothing half-written is committed later by someone else's ``commit``); the connection's
    autocommit setting is restored either way.
    """
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        yield conn
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = autocommit


@contextlib.contextmanager
def transaction(conn, commit=True):
    """A block run as one transaction on ``conn``: committed when it ends, or rolled back when ``commit``
    is false (check mode: the statements ran, nothing stays) or when the block raises."""
    with explicit_transactions(conn):
        yield conn
        if commit:
            conn.commit()
        else:
            conn.rollback()


def fetch_all(conn, sql, args=None):
    """Rows of one statement, on a cursor closed afterwards."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def execute(conn, sql, args=None):
    """Run one statement on a cursor closed afterwards."""
    with conn.cursor() as cur:
        cur.execute(sql, args)


def fetch_dicts(conn, sql, args=None):
    """Rows as dicts with JSON-safe values (times as ISO 8601 text, numerics as floats)."""
    with conn.cursor() as cur:
        cur.execute(sql, args or {})
        names = [col[0] for col in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    for row in rows:
        for key, value in row.items():
            if hasattr(value, 'isoformat'):
                row[key] = value.isoformat()
            elif value.__class__.__name__ == 'Decimal':
                row[key] = float(value)
    return rows


def quote_ident(name):
    """Quote an identifier (optionally schema-qualified as a list) safely.

    ``name`` may be ``'table'``, ``('schema', 'table')`` or ``['schema', 'table']``.
    Names are taken exactly as given (no case folding).
    """
    parts = [name] if isinstance(name, str) else list(name)
    for part in parts:
        if not isinstance(part, str) or part == '' or '\x00' in part:
            raise ValueError('invalid identifier %r' % (part,))
    return '.'.join('"%s"' % part.replace('"', '""') for part in parts)


def quote_relation(name):
    """``[schema.]name`` as given by a user, quoted for SQL (``"schema"."name"``).

    Raises ``ValueError`` for anything that is not one or two identifiers.
    """
    schema, relation = split_qualified_name(name)
    return quote_ident((schema, relation) if schema else relation)


def split_qualified_name(name):
    """Split ``schema.table`` into a tuple, honouring double quotes.

    ``public.t`` gives ``('public', 't')``; ``"my.schema"."odd ""q"` gives
    ``('my.schema', 'odd "q')`` (a doubled quote inside quotes is one quote);
    ``t`` gives ``(None, 't')``. Raises
    ``ValueError`` for anything that is not one or two identifiers.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError('empty relation name')
    parts, current, i, quoted = [], [], 0, False
    while i < len(name):
        ch = name[i]
        if quoted:
            if ch == '"':
                if i + 1 < len(name) and name[i + 1] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            if current:
                raise ValueError('misplaced quote in relation name %r' % name)
            quoted = True
        elif ch == '.':
            parts.append(''.join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if quoted:
        raise ValueError('unterminated quote in relation name %r' % name)
    parts.append(''.join(current))
    if any(part == '' for part in parts) or len(parts) > 2:
        raise ValueError('relation name %r is not [schema.]name' % name)
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]
