# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only health report of a PostgreSQL database: indexes, bloat, vacuum need,
sessions, connections and named orphan checks.

Plain Python (psycopg2 only), shared by the ``pg_health_info`` module, the
``pg_maintenance`` module (``targets: auto``), playbooks and tests. Every query is
a catalog/statistics read; orphan checks run inside ``BEGIN READ ONLY`` and are
rolled back.

Thresholds follow the anchors in docs/pg_maintenance.md (PgHero, pganalyze,
ioguix); all are options so small test databases can use small values.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option, format_duration
from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import quote_ident, split_qualified_name
from ansible_collections.cerniq.ops.plugins.module_utils.pg_maintenance import AUTO_ACTIONS, cc_kind, tasks_from_health

MB = 1024 * 1024

SECTIONS = ('index_usage', 'unused_indexes', 'index_bloat', 'table_bloat', 'invalid_indexes',
            'vacuum_candidates', 'sessions', 'connections', 'orphans', 'reindex_candidates')

DEFAULT_THRESHOLDS = dict(
    unused_index_min_bytes=10 * MB,       # PgHero
    min_stats_age='14 days',              # stats younger than this make "unused" doubtful
    index_bloat_pct=50.0,
    index_bloat_min_bytes=100 * MB,
    table_bloat_pct=40.0,
    table_bloat_min_bytes=100 * MB,
    dead_tuples_pct=5.0,
    min_dead_tuples=100,
    freeze_age=10000000,
    long_running='5m',
    idle_in_transaction='1m',
    connections_warn_pct=80.0,
)

# Thresholds that are durations with a unit (the others are numbers).
DURATION_THRESHOLDS = ('min_stats_age', 'long_running', 'idle_in_transaction')

SYSTEM_SCHEMAS = ('pg_catalog', 'information_schema', 'pg_toast')
MAXALIGN = 8


class HealthError(EngineError):
    """Bad options (unknown section, threshold or malformed orphan check)."""


def _rows(conn, sql, args=None):
    cur = conn.cursor()
    try:
        cur.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        cur.close()


def _align(value, to=MAXALIGN):
    value = int(math.ceil(value))
    return value if value % to == 0 else value + to - value % to


def _num(value):
    """JSON-friendly numbers (Decimal -> float)."""
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, int):
        return value
    return round(float(value), 2)


def _schema_args(schemas):
    return dict(schemas=list(schemas) if schemas else None, system=list(SYSTEM_SCHEMAS))


_SCHEMA_FILTER = ("(%(schemas)s::text[] IS NULL OR {col} = ANY(%(schemas)s::text[])) "
                  "AND {col} <> ALL(%(system)s::text[])")


def normalize_thresholds(thresholds):
    """DEFAULT_THRESHOLDS overridden by ``thresholds`` (None = default), checked; durations in seconds."""
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in DEFAULT_THRESHOLDS:
            raise HealthError('unknown threshold %r (known: %s)' % (key, ', '.join(sorted(DEFAULT_THRESHOLDS))))
        if value is None or key in DURATION_THRESHOLDS:
            merged[key] = DEFAULT_THRESHOLDS[key] if value is None else value
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise HealthError('threshold %s must be a number, got %r' % (key, value))
        if math.isnan(value) or math.isinf(value) or value < 0:
            raise HealthError('threshold %s must be a finite number >= 0, got %r' % (key, value))
        merged[key] = value
    try:
        for key in DURATION_THRESHOLDS:
            merged[key] = duration_option(merged[key], 'threshold %s' % key, 0)
    except DurationError as error:
        raise HealthError(str(error))
    return merged


def pgstattuple_schema(conn):
    """Schema of the pgstattuple extension in this database, or None."""
    rows = _rows(conn, """SELECT n.nspname FROM pg_catalog.pg_extension e
                          JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                          WHERE e.extname = 'pgstattuple'""")
    return rows[0]['nspname'] if rows else None


# --------------------------------------------------------------------------- sections

def stats_info(conn):
    row = _rows(conn, """SELECT stats_reset,
                                extract(epoch FROM now() - stats_reset) AS age_s,
                                extract(epoch FROM now() - pg_postmaster_start_time()) AS uptime_s
                         FROM pg_catalog.pg_stat_database WHERE datname = current_database()""")[0]
    age = row['age_s']
    return dict(stats_reset=row['stats_reset'].isoformat() if row['stats_reset'] else None,
                stats_age_days=_num(float(age) / 86400.0) if age is not None else None,
                server_uptime_days=_num(float(row['uptime_s']) / 86400.0))


def index_usage(conn, schemas=None):
    sql = """
        SELECT s.schemaname AS schema, s.relname AS table, s.indexrelname AS index,
               s.indexrelid AS index_oid, s.relid AS table_oid,
               s.idx_scan, s.idx_tup_read, s.idx_tup_fetch,
               pg_catalog.pg_relation_size(s.indexrelid) AS size_bytes,
               pg_catalog.pg_size_pretty(pg_catalog.pg_relation_size(s.indexrelid)) AS size,
               i.indisprimary AS is_primary, i.indisunique AS is_unique, i.indisvalid AS is_valid,
               EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = s.indexrelid) AS constraint_backed,
               am.amname AS method
        FROM pg_catalog.pg_stat_user_indexes s
        JOIN pg_catalog.pg_index i ON i.indexrelid = s.indexrelid
        JOIN pg_catalog.pg_class ic ON ic.oid = s.indexrelid
        JOIN pg_catalog.pg_am am ON am.oid = ic.relam
        WHERE """ + _SCHEMA_FILTER.format(col='s.schemaname') + """
        ORDER BY s.idx_scan DESC, size_bytes DESC, s.schemaname, s.indexrelname"""
    return _rows(conn, sql, _schema_args(schemas))


def unused_indexes(conn, thresholds, schemas=None, usage=None, stats=None):
    usage = usage if usage is not None else index_usage(conn, schemas)
    stats = stats or stats_info(conn)
    young = stats['stats_age_days'] is not None and stats['stats_age_days'] * 86400 < thresholds['min_stats_age']
    rows = []
    for row in usage:
        if row['idx_scan'] != 0 or row['size_bytes'] < thresholds['unused_index_min_bytes']:
            continue
        if row['is_primary'] or row['is_unique'] or row['constraint_backed']:
            continue
        item = dict(row)
        item['stats_reset'] = stats['stats_reset']
        item['stats_age_days'] = stats['stats_age_days']
        item['stats_too_young'] = young
        rows.append(item)
    return rows


def invalid_indexes(conn, schemas=None):
    sql = """
        SELECT n.nspname AS schema, ct.relname AS table, c.relname AS index,
               c.oid AS index_oid, i.indrelid AS table_oid,
               pg_catalog.pg_relation_size(c.oid) AS size_bytes,
               EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p
                       WHERE p.relid = i.indrelid OR p.index_relid = c.oid) AS build_in_progress
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_class ct ON ct.oid = i.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT i.indisvalid
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]) OR n.nspname = 'pg_toast')
        ORDER BY n.nspname, c.relname"""
    rows = _rows(conn, sql, _schema_args(schemas))
    for row in rows:
        row['kind'] = cc_kind(row['index']) or 'invalid'
    return rows


def vacuum_candidates(conn, thresholds, schemas=None):
    sql = """
        SELECT s.schemaname AS schema, s.relname AS table, s.relid AS table_oid,
               s.n_live_tup, s.n_dead_tup,
               pg_catalog.age(c.relfrozenxid) AS xid_age,
               pg_catalog.pg_table_size(s.relid) AS size_bytes,
               s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze
        FROM pg_catalog.pg_stat_user_tables s
        JOIN pg_catalog.pg_class c ON c.oid = s.relid
        WHERE c.relkind IN ('r', 'm') AND """ + _SCHEMA_FILTER.format(col='s.schemaname') + """
        ORDER BY s.n_dead_tup DESC, s.schemaname, s.relname"""
    out = []
    for row in _rows(conn, sql, _schema_args(schemas)):
        live, dead = row['n_live_tup'] or 0, row['n_dead_tup'] or 0
        dead_pct = 100.0 * dead / (live + dead) if live + dead else 0.0
        reasons, why = [], []
        if dead > thresholds['min_dead_tuples'] and dead_pct > thresholds['dead_tuples_pct']:
            reasons.append('dead_tuples')
            why.append('%d dead tuples (%.1f%%)' % (dead, dead_pct))
        if row['xid_age'] is not None and row['xid_age'] > thresholds['freeze_age']:
            reasons.append('freeze')
            why.append('relfrozenxid age %d' % row['xid_age'])
        if not reasons:
            continue
        for key in ('last_vacuum', 'last_autovacuum', 'last_analyze', 'last_autoanalyze'):
            row[key] = row[key].isoformat() if row[key] else None
        row.update(dead_pct=_num(dead_pct), reasons=reasons, why=why)
        out.append(row)
    return out


def sessions(conn, thresholds):
    rows = _rows(conn, """
        SELECT pid, usename AS user, datname AS database, application_name, client_addr::text AS client_addr,
               state, wait_event_type, wait_event,
               extract(epoch FROM now() - query_start) AS query_seconds,
               extract(epoch FROM now() - xact_start) AS xact_seconds,
               extract(epoch FROM now() - state_change) AS state_seconds,
               left(query, 300) AS query
        FROM pg_catalog.pg_stat_activity
        WHERE pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
        ORDER BY query_start""")
    long_running, idle_tx = [], []
    for row in rows:
        for key in ('query_seconds', 'xact_seconds', 'state_seconds'):
            row[key] = _num(row[key])
        if row['state'] == 'active' and (row['query_seconds'] or 0) > thresholds['long_running']:
            long_running.append(row)
        elif (row['state'] or '').startswith('idle in transaction') and \
                (row['state_seconds'] or 0) > thresholds['idle_in_transaction']:
            idle_tx.append(row)
    return dict(long_running=long_running, idle_in_transaction=idle_tx)


def connections(conn, thresholds):
    row = _rows(conn, """
        SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS total,
               count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active,
               count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle') AS idle,
               count(*) FILTER (WHERE backend_type = 'client backend'
                                AND state LIKE 'idle in transaction%%') AS idle_in_transaction,
               current_setting('max_connections')::int AS max_connections,
               current_setting('superuser_reserved_connections')::int AS superuser_reserved
        FROM pg_catalog.pg_stat_activity""")[0]
    usable = max(1, row['max_connections'] - row['superuser_reserved'])
    row['usage_pct'] = _num(100.0 * row['total'] / row['max_connections'])
    row['usable_pct'] = _num(100.0 * row['total'] / usable)
    row['warning'] = row['usage_pct'] >= thresholds['connections_warn_pct']
    return row


def _index_bloat_estimate(conn, schemas=None):
    """ioguix-style B-tree estimate from pg_class and pg_stats; computed in Python."""
    sql = """
        WITH idx AS (
            SELECT c.oid AS index_oid, i.indrelid AS table_oid, n.nspname AS schema, ct.relname AS table,
                   c.relname AS index, c.reltuples, i.indnatts, i.indkey, i.indisvalid,
                   pg_catalog.pg_relation_size(c.oid) AS size_bytes,
                   coalesce((SELECT substring(o FROM 'fillfactor=([0-9]+)')::int
                             FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%%'), 90) AS fillfactor
            FROM pg_catalog.pg_index i
            JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
            JOIN pg_catalog.pg_class ct ON ct.oid = i.indrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_am am ON am.oid = c.relam AND am.amname = 'btree'
            WHERE """ + _SCHEMA_FILTER.format(col='n.nspname') + """
        ), cols AS (
            SELECT idx.index_oid, idx.schema,
                   coalesce(a1.attname, a2.attname) AS attname,
                   coalesce(a1.atttypid, a2.atttypid) AS atttypid,
                   CASE WHEN a1.attname IS NULL THEN idx.index ELSE idx.table END AS statrel
            FROM idx CROSS JOIN LATERAL generate_series(1, idx.indnatts) AS k(pos)
            LEFT JOIN pg_catalog.pg_attribute a1
                   ON idx.indkey[k.pos - 1] <> 0 AND a1.attrelid = idx.table_oid AND a1.attnum = idx.indkey[k.pos - 1]
            LEFT JOIN pg_catalog.pg_attribute a2
                   ON idx.indkey[k.pos - 1] = 0 AND a2.attrelid = idx.index_oid AND a2.attnum = k.pos
        ), widths AS (
            SELECT cols.index_oid,
                   max(coalesce(s.null_frac, 0)) AS max_null_frac,
                   sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024)) AS data_width,
                   bool_or(s.attname IS NULL OR cols.atttypid = 'pg_catalog.name'::regtype) AS is_na
            FROM cols LEFT JOIN pg_catalog.pg_stats s
                   ON s.schemaname = cols.schema AND s.tablename = cols.statrel AND s.attname = cols.attname
            GROUP BY cols.index_oid
        )
        SELECT idx.index_oid, idx.table_oid, idx.schema, idx.table, idx.index, idx.reltuples, idx.size_bytes,
               idx.fillfactor, idx.indisvalid AS is_valid, w.max_null_frac, w.data_width, w.is_na,
               current_setting('block_size')::int AS block_size
        FROM idx JOIN widths w ON w.index_oid = idx.index_oid
        ORDER BY idx.schema, idx.index"""
    out = []
    for row in _rows(conn, sql, _schema_args(schemas)):
        bs = row['block_size']
        pages = row['size_bytes'] // bs
        header = 8 if not row['max_null_frac'] else 12
        width = _align(header) + _align(float(row['data_width'] or 0))
        per_page = max(1, int(((bs - 24 - 16) * row['fillfactor'] / 100.0) // (4 + width)))
        reltuples = float(row['reltuples'])
        is_na = bool(row['is_na']) or reltuples < 0
        est_pages = 1 + int(math.ceil(max(reltuples, 0) / per_page))
        extra = max(0, pages - est_pages)
        out.append(dict(schema=row['schema'], table=row['table'], index=row['index'],
                        index_oid=row['index_oid'], table_oid=row['table_oid'], is_valid=row['is_valid'],
                        size_bytes=row['size_bytes'], bloat_bytes=extra * bs,
                        bloat_pct=_num(100.0 * extra / pages) if pages else 0.0,
                        fillfactor=row['fillfactor'], method='estimate', is_na=is_na))
    return out


def _exact_measurements(conn, rows, schema, function, columns, kind, min_bytes, exact, warnings):
    """(row, measurement) for each estimated ``kind`` ('index' or 'table') row a pgstattuple ``function`` measures.

    With ``exact='auto'`` only relations of at least ``min_bytes``; invalid indexes never. A failure keeps
    the estimate (with a warning); permission denied stops the measuring, since it is the same for every
    relation (grant pg_stat_scan_tables to use it).
    """
    sql = 'SELECT %s FROM %s.%s(%%s::oid::regclass)' % (columns, quote_ident(schema), function)
    for row in rows:
        if (exact == 'auto' and row['size_bytes'] < min_bytes) or not row.get('is_valid', True):
            continue
        try:
            got = _rows(conn, sql, (row[kind + '_oid'],))[0]
        except Exception as error:  # permission denied, relation dropped meanwhile...
            if warnings is not None:
                warnings.append('%s(%s.%s) failed, estimate kept: %s' % (
                    function, row['schema'], row[kind], str(error).strip().splitlines()[0]))
            if 'permission denied' in str(error):
                break
            continue
        yield row, got


def index_bloat(conn, thresholds, schemas=None, exact='auto', warnings=None):
    """B-tree bloat: estimate for all, pgstatindex for the ones big enough to matter.

    ``exact``: 'auto' (pgstatindex when the extension is installed, for indexes of
    at least ``index_bloat_min_bytes``), 'always' (every B-tree index), 'never'.
    """
    rows = _index_bloat_estimate(conn, schemas)
    schema = pgstattuple_schema(conn) if exact != 'never' else None
    if exact == 'always' and schema is None and warnings is not None:
        warnings.append('exact bloat requested but the pgstattuple extension is not installed: estimates only')
    if schema is None:
        return rows
    for row, got in _exact_measurements(conn, rows, schema, 'pgstatindex', 'avg_leaf_density, leaf_pages',
                                        'index', thresholds['index_bloat_min_bytes'], exact, warnings):
        density = got['avg_leaf_density']
        if density is None or math.isnan(float(density)):  # NaN: empty index
            pct = 0.0
        else:
            pct = max(0.0, 100.0 * (1.0 - float(density) / float(row['fillfactor'])))
        row.update(method='pgstattuple', is_na=False, bloat_pct=_num(pct),
                   bloat_bytes=int(row['size_bytes'] * pct / 100.0), avg_leaf_density=_num(density))
    return rows


def _table_bloat_estimate(conn, schemas=None):
    sql = """
        SELECT c.oid AS table_oid, n.nspname AS schema, c.relname AS table, c.reltuples,
               pg_catalog.pg_relation_size(c.oid) AS size_bytes,
               coalesce((SELECT substring(o FROM 'fillfactor=([0-9]+)')::int
                         FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%%'), 100) AS fillfactor,
               (SELECT sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024))
                  FROM pg_catalog.pg_attribute a
                  LEFT JOIN pg_catalog.pg_stats s
                         ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS data_width,
               (SELECT bool_or(s.attname IS NULL)
                  FROM pg_catalog.pg_attribute a
                  LEFT JOIN pg_catalog.pg_stats s
                         ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS is_na,
               current_setting('block_size')::int AS block_size
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm') AND """ + _SCHEMA_FILTER.format(col='n.nspname') + """
        ORDER BY n.nspname, c.relname"""
    out = []
    for row in _rows(conn, sql, _schema_args(schemas)):
        bs = row['block_size']
        pages = row['size_bytes'] // bs
        width = 24 + _align(float(row['data_width'] or 0))
        per_page = max(1, int(((bs - 24) * row['fillfactor'] / 100.0) // (4 + width)))
        reltuples = float(row['reltuples'])
        est_pages = int(math.ceil(max(reltuples, 0) / per_page))
        extra = max(0, pages - est_pages)
        out.append(dict(schema=row['schema'], table=row['table'], table_oid=row['table_oid'],
                        size_bytes=row['size_bytes'], bloat_bytes=extra * bs,
                        bloat_pct=_num(100.0 * extra / pages) if pages else 0.0,
                        fillfactor=row['fillfactor'], method='estimate',
                        is_na=bool(row['is_na']) or reltuples < 0))
    return out


def table_bloat(conn, thresholds, schemas=None, exact='auto', warnings=None):
    """Table bloat: estimate, confirmed with pgstattuple_approx when available."""
    rows = _table_bloat_estimate(conn, schemas)
    schema = pgstattuple_schema(conn) if exact != 'never' else None
    if schema is None:
        return rows
    for row, got in _exact_measurements(conn, rows, schema, 'pgstattuple_approx',
                                        'approx_free_percent, dead_tuple_percent', 'table',
                                        thresholds['table_bloat_min_bytes'], exact, warnings):
        pct = float(got['approx_free_percent'] or 0) + float(got['dead_tuple_percent'] or 0)
        pct = max(0.0, pct - (100 - row['fillfactor']))
        row.update(method='pgstattuple', is_na=False, bloat_pct=_num(pct),
                   bloat_bytes=int(row['size_bytes'] * pct / 100.0))
    return rows


def normalize_orphan_check(check):
    """An orphan check is {name, query} or {name, child_table, child_column, parent_table, parent_column}."""
    if not isinstance(check, dict) or not check.get('name') or not isinstance(check['name'], str):
        raise HealthError('each orphan check needs a name: %r' % (check,))
    for key, value in check.items():
        if (value is not None and not isinstance(value, str)) or (isinstance(value, str) and '\x00' in value):
            raise HealthError('orphan check %s: %s must be text without NUL bytes' % (check['name'], key))
    structured = ('child_table', 'child_column', 'parent_table', 'parent_column')
    if check.get('query'):
        if any(check.get(key) for key in structured):
            raise HealthError('orphan check %s: give query or the table/column keys, not both' % check['name'])
        return dict(name=check['name'], sql=check['query'])
    missing = [key for key in structured if not check.get(key)]
    if missing:
        raise HealthError('orphan check %s: missing %s' % (check['name'], ', '.join(missing)))
    try:
        child = quote_ident([p for p in split_qualified_name(check['child_table']) if p is not None])
        parent = quote_ident([p for p in split_qualified_name(check['parent_table']) if p is not None])
        ccol, pcol = quote_ident(check['child_column']), quote_ident(check['parent_column'])
    except ValueError as error:
        raise HealthError('orphan check %s: %s' % (check['name'], error))
    sql = ('SELECT count(*) FROM %s c WHERE c.%s IS NOT NULL AND NOT EXISTS '
           '(SELECT 1 FROM %s p WHERE p.%s = c.%s)' % (child, ccol, parent, pcol, ccol))
    return dict(name=check['name'], sql=sql)


def orphans(conn, checks, statement_timeout_ms=60000):
    """Run each named check read-only; a check returns one count, or rows (counted)."""
    out = []
    for check in [normalize_orphan_check(c) for c in (checks or [])]:
        cur = conn.cursor()
        item = dict(name=check['name'], sql=check['sql'], count=None, error=None)
        try:
            cur.execute('BEGIN READ ONLY')
            cur.execute('SET LOCAL statement_timeout = %s', ('%dms' % statement_timeout_ms,))
            cur.execute(check['sql'])
            rows = cur.fetchall()
            if len(rows) == 1 and len(rows[0]) == 1 and isinstance(rows[0][0], int):
                item['count'] = rows[0][0]
            else:
                item['count'] = len(rows)
        except Exception as error:
            item['error'] = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        finally:
            try:
                cur.execute('ROLLBACK')
            except Exception:
                pass
            cur.close()
        out.append(item)
    return out


def reindex_candidates(invalid, bloat, thresholds):
    out = []
    for row in invalid:
        if row['build_in_progress']:
            continue
        if row['kind'] in ('ccnew', 'ccold'):
            reason = ('leftover of an interrupted REINDEX CONCURRENTLY (%s: %s)' % (
                row['kind'], 'unfinished copy' if row['kind'] == 'ccnew' else 'old index, rebuild succeeded'))
            action = 'drop_invalid_index'
        else:
            reason, action = 'invalid index', 'reindex'
        out.append(dict(schema=row['schema'], table=row['table'], index=row['index'], kind=row['kind'],
                        size_bytes=row['size_bytes'], action=action, reason=reason))
    for row in bloat:
        if not row['is_valid'] or row['is_na'] and row['method'] == 'estimate':
            continue
        if row['bloat_pct'] >= thresholds['index_bloat_pct'] and row['size_bytes'] >= thresholds['index_bloat_min_bytes']:
            out.append(dict(schema=row['schema'], table=row['table'], index=row['index'], kind='bloated',
                            size_bytes=row['size_bytes'], action='reindex',
                            reason='bloat %.1f%% (%s) of %d bytes' % (row['bloat_pct'], row['method'],
                                                                      row['size_bytes'])))
    return out


def check_report_options(sections=None, thresholds=None, schemas=None, exact_bloat='auto', orphan_checks=None):
    """Validate a report's options without a server: (sections, thresholds, checks); HealthError if refused."""
    sections = list(sections or SECTIONS)
    unknown = [str(s) for s in sections if s not in SECTIONS]
    if unknown:
        raise HealthError('unknown section(s) %s (known: %s)' % (', '.join(unknown), ', '.join(SECTIONS)))
    if exact_bloat not in ('auto', 'always', 'never'):
        raise HealthError('exact_bloat must be auto, always or never')
    for schema in schemas or []:
        if not isinstance(schema, str) or not schema or '\x00' in schema:
            raise HealthError('schemas must be schema names, got %r' % (schema,))
    if not isinstance(orphan_checks or [], (list, tuple)):
        raise HealthError('orphan_checks must be a list, got %r' % (orphan_checks,))
    return sections, normalize_thresholds(thresholds), [normalize_orphan_check(c) for c in (orphan_checks or [])]


def health_report(conn, sections=None, thresholds=None, schemas=None, exact_bloat='auto', orphan_checks=None):
    """The report as a dict: one key per requested section plus stats, thresholds, warnings."""
    sections, th, checks = check_report_options(sections, thresholds, schemas, exact_bloat, orphan_checks)
    warnings = []
    shown = dict((key, format_duration(value) if key in DURATION_THRESHOLDS else value) for key, value in th.items())
    report = dict(thresholds=shown, warnings=warnings, server_version_num=int(conn.server_version))
    report['stats'] = stats_info(conn)
    usage = invalid = bloat = None
    if 'index_usage' in sections or 'unused_indexes' in sections:
        usage = index_usage(conn, schemas)
    if 'index_usage' in sections:
        report['index_usage'] = usage
    if 'unused_indexes' in sections:
        report['unused_indexes'] = unused_indexes(conn, th, schemas, usage, report['stats'])
        if report['unused_indexes'] and any(r['stats_too_young'] for r in report['unused_indexes']):
            warnings.append('index statistics are only %s days old (reset %s): "unused" may be wrong' % (
                report['stats']['stats_age_days'], report['stats']['stats_reset']))
    if 'invalid_indexes' in sections or 'reindex_candidates' in sections:
        invalid = invalid_indexes(conn, schemas)
    if 'invalid_indexes' in sections:
        report['invalid_indexes'] = invalid
    if 'index_bloat' in sections or 'reindex_candidates' in sections:
        bloat = index_bloat(conn, th, schemas, exact_bloat, warnings)
    if 'index_bloat' in sections:
        report['index_bloat'] = bloat
    if 'table_bloat' in sections:
        report['table_bloat'] = table_bloat(conn, th, schemas, exact_bloat, warnings)
    if 'vacuum_candidates' in sections:
        report['vacuum_candidates'] = vacuum_candidates(conn, th, schemas)
    if 'sessions' in sections:
        report['sessions'] = sessions(conn, th)
    if 'connections' in sections:
        report['connections'] = connections(conn, th)
    if 'orphans' in sections:
        report['orphans'] = orphans(conn, [dict(name=c['name'], query=c['sql']) for c in checks])
        for item in report['orphans']:
            if item['error']:
                warnings.append('orphan check %s failed: %s' % (item['name'], item['error']))
    if 'reindex_candidates' in sections:
        report['reindex_candidates'] = reindex_candidates(invalid, bloat, th)
    return report


# The report sections maintenance_tasks reads.
MAINTENANCE_SECTIONS = ('vacuum_candidates', 'reindex_candidates')


def maintenance_tasks(conn, actions=AUTO_ACTIONS, thresholds=None, schemas=None):
    """What fixes what the report finds: its vacuum and reindex candidates as pg_maintenance tasks.

    The one composition of report and tasks, used by pg_maintenance (targets=auto) and the scheduled
    maintenance runner; returns ``(tasks, report)``.
    """
    report = health_report(conn, sections=MAINTENANCE_SECTIONS, thresholds=thresholds, schemas=schemas)
    return tasks_from_health(report, actions=actions), report
