# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archive or purge old rows of a live PostgreSQL table without losing any.

Plain Python (no Ansible imports): the ``cerniq.ops.pg_archive`` module, the
scheduled maintenance job, the benchmark and the tests all call ``run_archive``.

Guarantees (see docs/pg_archive.md):

* The cutoff is computed ONCE per run on the server (``now() - older_than``,
  cast to the timestamp column's type) or given explicitly; it is passed to
  every statement as a parameter and returned.
* Every batch is ONE statement in its own (autocommit) transaction::

      WITH moved AS (DELETE FROM src WHERE ctid = ANY(ARRAY(
                       SELECT ctid FROM src WHERE ts < cutoff AND (where)
                         AND ctid >= '(a,0)' AND ctid < '(b,0)'
                         LIMIT n FOR UPDATE SKIP LOCKED))
                     RETURNING cols),
           ins AS (INSERT INTO archive (cols) SELECT cols FROM moved)
      SELECT count(*) FROM moved

  so exactly the deleted rows are archived, a row is never in both tables,
  and killing the process at any point leaves the tables consistent.
  ``FOR UPDATE`` re-checks the condition on the newest row version (READ
  COMMITTED), so a row updated to ``ts >= cutoff`` is never moved.
* Batches walk the table's physical blocks (PG14+ TID range scans): the heap
  is read in order, ~5x faster than batching through the timestamp index.
  After the pass a final index-ordered sweep moves rows that concurrent
  updates relocated into blocks already passed; rows still locked by other
  sessions (SKIP LOCKED) or made due after the sweep are counted in
  ``left_for_next_run``.
* Natively RANGE-partitioned sources: partitions whose upper bound is <= the
  cutoff are detached CONCURRENTLY and moved whole (attached to a partitioned
  archive, else copied into it in one transaction, or dropped when purging);
  the remaining partitions with due rows are batched. An interrupted
  ``DETACH ... CONCURRENTLY`` is finalized on the next run and a detached
  partition left behind by a killed run is found again through its marker
  comment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import time

try:
    import psycopg2
    import psycopg2.errors  # noqa: F401  (errorcodes on exceptions)
except ImportError:  # pragma: no cover
    psycopg2 = None

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils import pg_archive_checks
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import quote_ident, split_qualified_name

MARKER_PREFIX = 'cerniq.ops pg_archive: moving out of '

DEFAULTS = dict(
    archive_table=None,
    timestamp_column='created_at',
    older_than=None,
    cutoff=None,
    where=None,
    batch_size=5000,
    min_batch_size=100,
    max_batch_size=100000,
    target_batch_time='200ms',
    time_budget=None,
    lock_timeout='1s',
    statement_timeout='60s',
    create_archive=False,
    allow_delete_side_effects=False,
    partition_mode='detach',
    strategy='auto',
    lock_retries=5,
)

_RETRY_CODES = ('55P03', '57014', '40P01', '40001')  # lock_not_available, query_canceled, deadlock, serialization
_TIMESTAMP_TYPES = ('timestamptz', 'timestamp', 'date')
FIRST_SPAN = 8192  # blocks (64 MB) at most in a pass's first statement, before its time is known
_FK_ACTIONS = {'c': 'CASCADE', 'n': 'SET NULL', 'd': 'SET DEFAULT'}


class ArchiveError(EngineError):
    """Refused or failed; the message is one line. ``result`` holds the result so far (if any)."""


def _pct(fragment):
    """Escape ``%`` in a SQL fragment (identifier, trusted condition) of a statement run with parameters."""
    return fragment.replace('%', '%%')


def _one_line(error):
    text = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return text[0] if text else error.__class__.__name__


def check_where(where):
    """Accept one balanced SQL expression (see ``pg_archive_checks.check_where``); else ArchiveError."""
    try:
        return pg_archive_checks.check_where(where)
    except ValueError as error:
        raise ArchiveError(str(error))


def check_options(**options):
    """Every option of a run, defaults filled in, validated and normalized; ArchiveError if refused.

    Needs no server: the module calls it before connecting.
    """
    unknown = sorted(set(options) - set(DEFAULTS) - set(['source_table']))
    if unknown:
        raise ArchiveError('unknown option(s): %s' % ', '.join(unknown))
    merged = dict(DEFAULTS)
    merged.update(options)
    try:
        return pg_archive_checks.check_options(merged)
    except ValueError as error:
        raise ArchiveError(str(error))


class _Table(object):
    """A resolved relation: oid, quoted name, kind."""

    def __init__(self, oid, schema, name, relkind):
        self.oid = oid
        self.schema = schema
        self.name = name
        self.relkind = relkind
        self.sql = quote_ident([schema, name])
        # A plain table's rows only: never its inheritance children (a partitioned table needs its tree).
        self.scan = self.sql if relkind == 'p' else 'ONLY ' + self.sql

    @property
    def display(self):
        return '%s.%s' % (self.schema, self.name)


class ArchiveRun(object):
    """One archive/purge run over one connection (autocommit)."""

    def __init__(self, conn, check_mode=False, want_diff=False, progress=None, **options):
        opts = check_options(**options)
        self.conn = conn
        self.source_name = opts['source_table']
        self.archive_name = opts['archive_table']
        self.ts_name = opts['timestamp_column']
        self.older_than = opts['older_than']
        self.cutoff_given = opts['cutoff']
        self.where = opts['where']
        self.min_batch = opts['min_batch_size']
        self.max_batch = opts['max_batch_size']
        self.batch_size = opts['batch_size']
        self.target_ms = opts['target_batch_ms']
        self.time_budget = opts['time_budget']
        self.lock_timeout_ms = opts['lock_timeout_ms']
        self.statement_timeout_ms = opts['statement_timeout_ms']
        self.create_archive = opts['create_archive']
        self.allow_side_effects = opts['allow_delete_side_effects']
        self.partition_mode = opts['partition_mode']
        self.strategy = opts['strategy']
        self.lock_retries = opts['lock_retries']
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.progress = progress
        self.started = time.monotonic()
        self.batch_ms = []
        self.source = None
        self.cutoff_text = None
        self.touched = False
        self.used = set()
        self.skipped_leaves = 0
        self.count_span = 4096  # blocks per read-only count statement; adapts like the batches
        self.block_span = FIRST_SPAN
        self.result = dict(
            changed=False, mode='archive' if self.archive_name else 'purge', cutoff=None,
            source_table=None, archive_table=None, moved=0, moved_in_batches=0, moved_in_partitions=0,
            partitions_moved=[], batches=0, passes=0, worst_batch_ms=0.0, median_batch_ms=0.0,
            elapsed_seconds=0.0, strategy=self.strategy, archive_created=False, left_for_next_run=0,
            stopped_by_time_budget=False, final_check_ms=0.0, worst_check_ms=0.0, batches_skipping_locked_rows=0,
            warnings=[], recovered=[], delete_side_effects=dict(foreign_keys=[], triggers=[], rules=[]))

    # ------------------------------------------------------------------ helpers
    def _q(self, sql, args=None, fetch='all'):
        cur = self.conn.cursor()
        try:
            cur.execute(sql, args)
            if fetch == 'all':
                return cur.fetchall()
            if fetch == 'one':
                return cur.fetchone()
            return cur.rowcount
        finally:
            cur.close()

    def _resolve(self, name, what, must_exist=True):
        try:
            parts = split_qualified_name(name)
            quoted = quote_ident([p for p in parts if p is not None])
        except ValueError as error:
            raise ArchiveError('%s: %s' % (what, error))
        row = self._q(
            "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            (quoted,), fetch='one')
        if row is None:
            if must_exist:
                raise ArchiveError('%s %s does not exist' % (what, name))
            return None, parts
        table = _Table(row[0], row[1], row[2], row[3])
        if table.relkind not in ('r', 'p'):
            raise ArchiveError('%s %s is not a table (relkind %s)' % (what, name, table.relkind))
        return table, parts

    def _columns(self, oid):
        """[(name, type, attgenerated, notnull, hasdefault)] in column order."""
        return self._q(
            "SELECT attname, format_type(atttypid, atttypmod), attgenerated, attnotnull, atthasdef "
            "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,))

    def _elapsed(self):
        return time.monotonic() - self.started

    def _out_of_time(self):
        return self.time_budget is not None and self._elapsed() >= self.time_budget

    def _note(self, message):
        self.result['warnings'].append(message)

    # ------------------------------------------------------------------ setup
    def prepare(self):
        # The where check tokenizes with standard_conforming_strings on: make the server agree.
        self._q("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false), "
                "set_config('standard_conforming_strings', 'on', false)",
                ('%dms' % self.lock_timeout_ms, '%dms' % self.statement_timeout_ms))
        self.version = self.conn.server_version
        self.source = self._resolve(self.source_name, 'source table')[0]
        self.result['source_table'] = self.source.display
        self.src_cols = self._columns(self.source.oid)
        types = dict((c[0], c[1]) for c in self.src_cols)
        if self.ts_name not in types:
            raise ArchiveError('source table %s has no column %s' % (self.source.display, self.ts_name))
        self.ts_type = types[self.ts_name]
        self._check_timestamp_type()
        self.ts_sql = quote_ident(self.ts_name)
        self.col_names = [c[0] for c in self.src_cols]
        self.cols_sql = ', '.join(quote_ident(c) for c in self.col_names)
        if self.strategy != 'index' and self.version < 140000:
            if self.strategy == 'block':
                self._note('PostgreSQL < 14 has no TID range scans: batching through the timestamp index')
            self.strategy = 'index'
        self._compute_cutoff()
        if self.where is not None:
            try:
                self._q('EXPLAIN SELECT 1 FROM %s WHERE (\n%s\n)' % (self.source.scan, self.where))
            except psycopg2.Error as error:
                raise ArchiveError('where is not a valid condition on %s: %s' % (
                    self.source.display, _one_line(error)))
        self.archive = None
        self.archive_missing = False
        if self.archive_name:
            self.archive, parts = self._resolve(self.archive_name, 'archive table', must_exist=False)
            if self.archive is None:
                if not self.create_archive:
                    raise ArchiveError('archive table %s does not exist (set create_archive to create it)'
                                       % self.archive_name)
                self.archive_missing = True
                self.archive_parts = (parts[0] or self.source.schema, parts[1])
                self.result['archive_table'] = '%s.%s' % self.archive_parts
            else:
                self._check_archive_is_elsewhere()
                self.result['archive_table'] = self.archive.display
                self._check_archive_columns()
        self._check_delete_side_effects()
        if self.source.relkind == 'r':
            children = self._q('SELECT count(*) FROM pg_inherits WHERE inhparent = %s', (self.source.oid,),
                               fetch='one')[0]
            if children:
                self._note('%s has %d inheritance child table(s): only its own rows are archived'
                           % (self.source.display, children))

    def _check_timestamp_type(self):
        """The cutoff comparison only means "older than" on timestamp, timestamptz and date (or domains over them)."""
        row = self._q('SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = %s AND a.attname = %s',
                      (self.source.oid, self.ts_name), fetch='one')
        type_oid, name = row[0], None
        for _depth in range(10):
            name, kind, base, schema = self._q(
                'SELECT t.typname, t.typtype, t.typbasetype, n.nspname FROM pg_type t '
                'JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = %s', (type_oid,), fetch='one')
            if kind != 'd':
                break
            type_oid = base
        if name not in _TIMESTAMP_TYPES or schema != 'pg_catalog':
            raise ArchiveError('timestamp_column %s of %s is %s: it must be timestamp, timestamptz or date '
                               '(a cutoff compared with another type does not mean "older than")'
                               % (self.ts_name, self.source.display, self.ts_type))

    def _check_archive_is_elsewhere(self):
        """Refuse an archive in the source's own partition or inheritance tree (rows would come back)."""
        row = self._q(
            'WITH RECURSIVE up(oid) AS (SELECT %(src)s::oid UNION SELECT i.inhparent FROM pg_inherits i '
            '  JOIN up ON i.inhrelid = up.oid), '
            'down(oid) AS (SELECT %(src)s::oid UNION SELECT i.inhrelid FROM pg_inherits i '
            '  JOIN down ON i.inhparent = down.oid), '
            'tree(oid) AS (SELECT oid FROM up UNION SELECT i.inhrelid FROM pg_inherits i '
            '  JOIN tree ON i.inhparent = tree.oid) '
            'SELECT %(arc)s::oid IN (SELECT oid FROM down), %(arc)s::oid IN (SELECT oid FROM up), '
            '%(arc)s::oid IN (SELECT oid FROM tree)',
            dict(src=self.source.oid, arc=self.archive.oid), fetch='one')
        if self.archive.oid == self.source.oid:
            what = 'is the source table itself'
        elif row[0]:
            what = 'is a partition (or inheritance child) of the source table %s' % self.source.display
        elif row[1]:
            what = 'is a parent of the source table %s' % self.source.display
        elif row[2]:
            what = 'is in the same partition (or inheritance) tree as the source table %s' % self.source.display
        else:
            return
        raise ArchiveError('archive table %s %s: archived rows would land back in the source; refused, '
                           'nothing was changed' % (self.archive.display, what))

    def _source_members(self):
        """Oids of the tables a DELETE on the source touches (itself, or its partition tree)."""
        if self.source.relkind == 'p':
            return [r[0] for r in self._q('SELECT relid::oid FROM pg_partition_tree(%s)', (self.source.oid,))]
        return [self.source.oid]

    def _check_delete_side_effects(self):
        """List what else a DELETE on the source changes; refuse unless allow_delete_side_effects.

        Foreign keys that reference the source with ON DELETE CASCADE / SET NULL / SET DEFAULT (rows of
        other tables, or of the source itself, change and are not archived), enabled DELETE triggers and
        DELETE rules.
        """
        members = self._source_members()
        found = self.result['delete_side_effects']
        for name, table, references, action in self._q(
                "WITH RECURSIVE fk(oid, parent) AS ("
                "  SELECT c.oid, c.conparentid FROM pg_constraint c WHERE c.contype = 'f' "
                "  AND c.confrelid = ANY(%s::oid[]) AND c.confdeltype IN ('c', 'n', 'd') "
                "  UNION SELECT p.oid, p.conparentid FROM pg_constraint p JOIN fk ON p.oid = fk.parent) "
                "SELECT DISTINCT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text, "
                "c.confdeltype FROM fk JOIN pg_constraint c ON c.oid = fk.oid WHERE fk.parent = 0 ORDER BY 1, 2",
                (members,)):
            found['foreign_keys'].append(dict(name=name, table=table, references=references,
                                              on_delete=_FK_ACTIONS[action]))
        clone_filter = ('AND NOT EXISTS (SELECT 1 FROM pg_trigger p WHERE p.oid = t.tgparentid '
                        'AND p.tgrelid = ANY(%(members)s::oid[]))' if self.version >= 130000 else '')
        for name, table, tgtype in self._q(
                "SELECT t.tgname, t.tgrelid::regclass::text, t.tgtype FROM pg_trigger t "
                "WHERE t.tgrelid = ANY(%(members)s::oid[]) AND NOT t.tgisinternal AND (t.tgtype & 8) <> 0 "
                "AND t.tgenabled IN ('O', 'A') " + clone_filter + " ORDER BY 2, 1", dict(members=members)):
            timing = 'BEFORE' if tgtype & 2 else ('INSTEAD OF' if tgtype & 64 else 'AFTER')
            found['triggers'].append(dict(name=name, table=table, timing=timing,
                                          level='ROW' if tgtype & 1 else 'STATEMENT'))
        for name, table in self._q(
                "SELECT r.rulename, r.ev_class::regclass::text FROM pg_rewrite r "
                "WHERE r.ev_class = ANY(%s::oid[]) AND r.ev_type = '4' AND r.ev_enabled IN ('O', 'A') "
                "ORDER BY 2, 1", (members,)):
            found['rules'].append(dict(name=name, table=table))
        if self.allow_side_effects or not any(found.values()):
            return
        listed = ['foreign key %s on %s (ON DELETE %s)' % (f['name'], f['table'], f['on_delete'])
                  for f in found['foreign_keys']]
        listed += ['trigger %s on %s (%s DELETE, %s)' % (t['name'], t['table'], t['timing'], t['level'])
                   for t in found['triggers']]
        listed += ['rule %s on %s (ON DELETE)' % (r['name'], r['table']) for r in found['rules']]
        raise ArchiveError(
            'deleting from %s also changes other rows, which are not archived: %s; refused, nothing was changed '
            '(set allow_delete_side_effects to archive anyway)' % (self.source.display, '; '.join(listed)))

    def _compute_cutoff(self):
        """The run's one cutoff, on the server's clock; refused when in the future or not finite."""
        if self.older_than is not None:
            sql = 'SELECT x::text, x, isfinite(x), true FROM (SELECT (now() - %%s::interval)::%s AS x) s' % (
                self.ts_type,)
            value = self.older_than
        else:
            sql = 'SELECT x::text, x, isfinite(x), x <= now()::%s FROM (SELECT %%s::%s AS x) s' % (
                self.ts_type, self.ts_type)
            value = self.cutoff_given
        try:
            row = self._q(sql, (value,), fetch='one')
        except psycopg2.Error as error:
            raise ArchiveError('cannot compute the cutoff for column %s (%s): %s' % (
                self.ts_name, self.ts_type, _one_line(error)))
        if not row[2]:
            raise ArchiveError('cutoff %s is not a finite point in time; refused' % row[0])
        if not row[3]:
            raise ArchiveError("cutoff %s is in the future (after the server's current time): it would move rows "
                               'that are not old yet; refused' % row[0])
        self.cutoff_text = row[0]
        value = row[1]
        self.result['cutoff'] = value.isoformat() if hasattr(value, 'isoformat') else str(value)
        self.cut = '%%(cutoff)s::%s' % self.ts_type

    def _check_archive_columns(self):
        arch = dict((c[0], c) for c in self._columns(self.archive.oid))
        missing, differ, generated = [], [], []
        for name, typ, _gen, _nn, _hd in self.src_cols:
            if name not in arch:
                missing.append(name)
            elif arch[name][1] != typ:
                differ.append('%s (%s in source, %s in archive)' % (name, typ, arch[name][1]))
            elif arch[name][2]:
                generated.append(name)
        extra_required = [n for n, c in arch.items() if n not in self.col_names and c[3] and not c[4]]
        problems = []
        if missing:
            problems.append('missing columns: %s' % ', '.join(missing))
        if differ:
            problems.append('different types: %s' % ', '.join(differ))
        if generated:
            problems.append('generated columns cannot take archived values: %s' % ', '.join(generated))
        if extra_required:
            problems.append('extra NOT NULL columns without default: %s' % ', '.join(extra_required))
        if problems:
            raise ArchiveError('archive table %s does not match source %s: %s; nothing was changed' % (
                self.archive.display, self.source.display, '; '.join(problems)))

    def _create_archive(self):
        # No defaults (they may use the source's sequences), no identity, no generated
        # expressions: the archive takes the source's values as they are.
        sql = 'CREATE TABLE %s (LIKE %s INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE ' \
              'INCLUDING COMMENTS)' % (quote_ident(list(self.archive_parts)), self.source.sql)
        self._q(sql, fetch=None)
        self.archive = self._resolve(quote_ident(list(self.archive_parts)), 'archive table')[0]
        self.archive_missing = False
        self.result['archive_created'] = True
        self.result['changed'] = True

    # ------------------------------------------------------------------ counting
    def _due_sql(self):
        """The due condition, ready for a statement run with parameters (``%`` escaped)."""
        sql = '%s < %s' % (_pct(self.ts_sql), self.cut)
        if self.where is not None:
            sql += ' AND (\n%s\n)' % _pct(self.where)
        return sql

    def count_due(self):
        row = self._q('SELECT count(*) FROM %s WHERE %s' % (_pct(self.source.scan), self._due_sql()),
                      {'cutoff': self.cutoff_text}, fetch='one')
        return int(row[0])

    # ------------------------------------------------------------------ partitions
    def _partitions(self):
        """Direct children: [(oid, schema, name, bound_expr, detach_pending, marker)]."""
        if self.version >= 140000:
            pending = 'i.inhdetachpending'
        else:
            pending = 'false'
        return self._q(
            "SELECT c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid), %s, "
            "obj_description(c.oid, 'pg_class') "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %%s ORDER BY c.oid" % pending,
            (self.source.oid,))

    def _range_key_is_ts(self):
        row = self._q("SELECT partstrat, partnatts, partattrs::text FROM pg_partitioned_table WHERE partrelid = %s",
                      (self.source.oid,), fetch='one')
        if row is None or row[0] != 'r' or row[1] != 1:
            return False
        attnum = int(row[2].split()[0])
        name = self._q('SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum = %s',
                       (self.source.oid, attnum), fetch='one')
        return name is not None and name[0] == self.ts_name

    _BOUND_RE = re.compile(r"^FOR VALUES FROM \((.*)\) TO \((.*)\)$", re.S)

    def _bound_is_old(self, bound):
        """True when a partition's upper bound is <= the cutoff (all its rows are due)."""
        match = self._BOUND_RE.match(bound or '')
        if not match:
            return False
        upper = match.group(2).strip()
        if upper.upper() == 'MAXVALUE':
            return False
        if upper.upper() == 'MINVALUE':
            return True
        row = self._q('SELECT (%s)::%s <= %s' % (upper, self.ts_type, self.cut),
                      {'cutoff': self.cutoff_text}, fetch='one')
        return bool(row[0])

    def _bound_lower_is_future(self, bound):
        match = self._BOUND_RE.match(bound or '')
        if not match:
            return False
        lower = match.group(1).strip()
        if lower.upper() in ('MINVALUE', 'MAXVALUE'):
            return lower.upper() == 'MAXVALUE'
        row = self._q('SELECT (%s)::%s >= %s' % (lower, self.ts_type, self.cut),
                      {'cutoff': self.cutoff_text}, fetch='one')
        return bool(row[0])

    def _orphans(self):
        """Tables left detached by a killed run (marker comment naming this source)."""
        marker = '%s%s;' % (MARKER_PREFIX, self.source.oid)
        return self._q(
            "SELECT c.oid, n.nspname, c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND NOT c.relispartition "
            "AND obj_description(c.oid, 'pg_class') LIKE %s",
            (marker.replace('%', '\\%').replace('_', '\\_') + '%',))

    def _has_default_partition(self):
        row = self._q('SELECT partdefid <> 0 FROM pg_partitioned_table WHERE partrelid = %s',
                      (self.source.oid,), fetch='one')
        return bool(row and row[0])

    def plan_partitions(self):
        """Old partitions to move whole, for a partitioned source in detach mode."""
        if self.source.relkind != 'p' or self.partition_mode != 'detach':
            return []
        if self.where is not None:
            self._note('where is set: old partitions are batched, not moved whole')
            return []
        if not self._range_key_is_ts():
            self._note('source is not RANGE-partitioned on %s alone: partitions are batched' % self.ts_name)
            return []
        old = []
        for oid, schema, name, bound, pending, comment in self._partitions():
            if bound and bound != 'DEFAULT' and self._bound_is_old(bound):
                old.append(dict(oid=oid, schema=schema, name=name, bound=bound, pending=pending))
        return old

    def _move_partition(self, part, already_detached=False):
        table_sql = quote_ident([part['schema'], part['name']])
        display = '%s.%s' % (part['schema'], part['name'])
        if not already_detached:
            marker = '%s%s; bound: %s' % (MARKER_PREFIX, self.source.oid, part['bound'])
            self._q('COMMENT ON TABLE %s IS %%s' % _pct(table_sql), (marker,), fetch=None)
            if part.get('pending'):
                self._q('ALTER TABLE %s DETACH PARTITION %s FINALIZE' % (self.source.sql, table_sql), fetch=None)
                self.result['recovered'].append('finalized interrupted detach of %s' % display)
            elif self._has_default_partition():
                # DETACH CONCURRENTLY is refused when a default partition exists.
                self._q('ALTER TABLE %s DETACH PARTITION %s' % (self.source.sql, table_sql), fetch=None)
            else:
                self._q('ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY' % (self.source.sql, table_sql),
                        fetch=None)
        rows = int(self._q('SELECT count(*) FROM %s' % table_sql, fetch='one')[0])
        how = self._dispose_detached(table_sql, part['bound'])
        self.result['partitions_moved'].append(dict(partition=display, rows=rows, how=how))
        self.result['moved_in_partitions'] += rows
        self.result['moved'] += rows
        self.result['changed'] = True

    def _partition_failed(self, part, error):
        display = '%s.%s' % (part['schema'], part['name'])
        row = self._q('SELECT c.relispartition, i.inhdetachpending FROM pg_class c LEFT JOIN pg_inherits i '
                      'ON i.inhrelid = c.oid WHERE c.oid = %s', (part['oid'],), fetch='one') \
            if self.version >= 140000 else self._q('SELECT relispartition, false FROM pg_class WHERE oid = %s',
                                                   (part['oid'],), fetch='one')
        if row is None:
            self._note('partition %s vanished while being moved (%s)' % (display, _one_line(error)))
        elif row[0] and not row[1]:
            self._q('COMMENT ON TABLE %s IS NULL' % quote_ident([part['schema'], part['name']]), fetch=None)
            self._note('partition %s not moved whole (%s); its rows are batched' % (display, _one_line(error)))
        elif row[0]:
            self._note('detach of %s interrupted (%s); its rows are batched now and the next run finalizes it'
                       % (display, _one_line(error)))
        else:
            self._note('partition %s detached but not yet on the archive side (%s); the next run finishes it'
                       % (display, _one_line(error)))

    def _dispose_detached(self, table_sql, bound):
        """The detached partition goes to the archive side (or is dropped when purging)."""
        if self.archive is None:
            self._q('DROP TABLE %s' % table_sql, fetch=None)
            return 'dropped'
        if self.archive.relkind == 'p':
            try:
                self._q('BEGIN', fetch=None)
                self._q('ALTER TABLE %s ATTACH PARTITION %s %s' % (self.archive.sql, table_sql, bound), fetch=None)
                self._q('COMMENT ON TABLE %s IS NULL' % table_sql, fetch=None)
                self._q('COMMIT', fetch=None)
                return 'attached to archive'
            except psycopg2.Error:
                self._q('ROLLBACK', fetch=None)
        cols = self.cols_sql
        self._q('BEGIN', fetch=None)
        try:
            self._q("SET LOCAL statement_timeout = 0", fetch=None)
            self._q('INSERT INTO %s (%s) SELECT %s FROM %s' % (self.archive.sql, cols, cols, table_sql), fetch=None)
            self._q('DROP TABLE %s' % table_sql, fetch=None)
            self._q('COMMIT', fetch=None)
        except Exception:
            self._q('ROLLBACK', fetch=None)
            raise
        return 'copied into archive'

    def recover(self):
        """Finish partitions left detached (or detach-pending) by an interrupted run."""
        if self.source.relkind != 'p':
            return
        for oid, schema, name, comment in self._orphans():
            bound = comment.split('; bound: ', 1)[1] if '; bound: ' in comment else None
            part = dict(oid=oid, schema=schema, name=name, bound=bound, pending=False)
            display = '%s.%s' % (schema, name)
            if bound and self._bound_is_old(bound):
                self._move_partition(part, already_detached=True)
                self.result['recovered'].append('moved %s left detached by an interrupted run' % display)
            elif bound:
                self._q('ALTER TABLE %s ATTACH PARTITION %s %s' % (
                    self.source.sql, quote_ident([schema, name]), bound), fetch=None)
                self._q('COMMENT ON TABLE %s IS NULL' % quote_ident([schema, name]), fetch=None)
                self.result['recovered'].append('re-attached %s (not older than this cutoff)' % display)
                self.result['changed'] = True
        for oid, schema, name, bound, pending, comment in self._partitions():
            if pending and not self._bound_is_old(bound):
                self._note('partition %s.%s is being detached by another session; left alone' % (schema, name))

    # ------------------------------------------------------------------ batching
    def _leaves(self):
        """Plain tables holding the source's rows (itself, or the leaf partitions with due rows)."""
        self.skipped_leaves = 0
        if self.source.relkind == 'r':
            return [(self.source.sql, self.source.display)]
        leaves = []
        rows = self._q(
            "SELECT c.oid, n.nspname, c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid), "
            "(SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid) "
            "FROM pg_partition_tree(%s) t JOIN pg_class c ON c.oid = t.relid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf ORDER BY c.oid",
            (self.source.oid,))
        for oid, schema, name, relkind, bound, parent in rows:
            if relkind != 'r':
                self._note('leaf %s.%s is not a plain table (relkind %s): skipped' % (schema, name, relkind))
                self.skipped_leaves += 1
                continue
            if parent == self.source.oid and bound and bound != 'DEFAULT' and self._bound_lower_is_future(bound):
                continue
            leaves.append((quote_ident([schema, name]), '%s.%s' % (schema, name)))
        return leaves

    def _batch_sql(self, rel_sql, block_range, ordered, skip_locked):
        """One batch: DELETE ... RETURNING feeding the archive INSERT, in one statement.

        The DELETE repeats the due condition: a row updated by another session after the inner
        SELECT's snapshot is re-checked on its newest version (READ COMMITTED EvalPlanQual) and moves
        only if still due. ``skip_locked`` selects the rows with FOR UPDATE SKIP LOCKED: rows other
        sessions hold are skipped instead of waited for, at the price of locking every row first.
        """
        due = self._due_sql()
        inner = 'SELECT ctid FROM ONLY %s WHERE %s' % (_pct(rel_sql), due)
        if block_range:
            inner += '\n AND ctid >= %(lo)s::tid AND ctid < %(hi)s::tid'
        if ordered:
            inner += '\n ORDER BY %s' % _pct(self.ts_sql)
        inner += '\n LIMIT %(limit)s'
        if skip_locked:
            inner += ' FOR UPDATE SKIP LOCKED'
        cols = _pct(self.cols_sql)
        returning = 'ctid AS "__cerniq_ctid", %s' % cols
        sql = 'WITH moved AS (DELETE FROM ONLY %s WHERE ctid = ANY(ARRAY(%s))\n AND %s RETURNING %s)' % (
            _pct(rel_sql), inner, due, returning)
        if self.archive is not None:
            sql += ', ins AS (INSERT INTO %s (%s) SELECT %s FROM moved)' % (_pct(self.archive.sql), cols, cols)
        # The last block touched (to resume a range cut short by the row limit), block passes only.
        sql += ' SELECT count(*), %s FROM moved' % ('max("__cerniq_ctid")::text' if block_range else 'NULL')
        return sql

    def _run_batch(self, sql, args, fallback_sql=None):
        """Run one batch statement, with retries; returns (rows moved, last block touched, ms).

        A lock or statement timeout, deadlock or serialization failure of ``sql`` is retried first as
        ``fallback_sql`` (the SKIP LOCKED form, which does not wait for rows other sessions hold), then
        with backoff and a halved size, ``lock_retries`` times.
        """
        attempt = 0
        while True:
            t0 = time.monotonic()
            try:
                row = self._q(sql, args, fetch='one')
            except psycopg2.Error as error:
                code = getattr(error, 'pgcode', None)
                if code in _RETRY_CODES and fallback_sql is not None:
                    sql, fallback_sql = fallback_sql, None
                    self.result['batches_skipping_locked_rows'] += 1
                    continue
                if code in _RETRY_CODES and attempt < self.lock_retries:
                    attempt += 1
                    time.sleep(min(2.0, 0.05 * (2 ** attempt)))
                    args = dict(args)
                    args['limit'] = max(self.min_batch, int(args['limit']) // 2)
                    self.batch_size = args['limit']
                    continue
                raise ArchiveError(self._batch_failure(error))
            ms = (time.monotonic() - t0) * 1000.0
            moved = int(row[0])
            self.batch_ms.append(ms)
            self.result['batches'] += 1
            self.result['moved'] += moved
            self.result['moved_in_batches'] += moved
            if moved:
                self.result['changed'] = True
            if self.progress:
                self.progress(dict(rows=moved, ms=ms, total=self.result['moved']))
            last_block = int(row[1].strip('()').split(',')[0]) if row[1] is not None else None
            return moved, last_block, ms

    def _batch_failure(self, error):
        """One line saying why a batch failed (it was rolled back as a whole)."""
        code = getattr(error, 'pgcode', None)
        detail = getattr(getattr(error, 'diag', None), 'message_detail', None)
        if code in ('23505', '23P01') and self.archive is not None:
            return ('archive table %s already holds a row with the key of a due row of %s (%s): that batch was '
                    'rolled back; remove the conflicting archive rows (or those source rows), then run again' % (
                        self.archive.display, self.source.display, detail or _one_line(error)))
        text = 'batch failed on %s: %s' % (self.source.display, _one_line(error))
        return '%s (%s)' % (text, detail) if detail else text

    def _adapt(self, ms):
        factor = max(0.5, min(2.0, self.target_ms / max(ms, 1.0)))
        self.batch_size = int(min(self.max_batch, max(self.min_batch, self.batch_size * factor)))
        return factor

    def _nblocks(self, rel_sql):
        row = self._q("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                      (rel_sql,), fetch='one')
        return int(row[0])

    def block_pass(self, rel_sql, span):
        """One pass over the relation's blocks (extended if the table grows during the pass).

        ``span`` is the first statement's block count; then span and row limit follow
        ``target_batch_ms``. Batches do not lock rows first; a batch that meets a row another session
        holds (lock_timeout) is run again with SKIP LOCKED. Returns False if stopped by time_budget.
        """
        max_span = 1000000
        sql = self._batch_sql(rel_sql, block_range=True, ordered=False, skip_locked=False)
        fallback = self._batch_sql(rel_sql, block_range=True, ordered=False, skip_locked=True)
        lo = 0
        end = self._nblocks(rel_sql)
        while lo < end:
            if self._out_of_time():
                self.result['stopped_by_time_budget'] = True
                return False
            hi = lo + span
            args = {'cutoff': self.cutoff_text, 'lo': '(%d,0)' % lo, 'hi': '(%d,0)' % hi,
                    'limit': self.batch_size}
            moved, last_block, ms = self._run_batch(sql, args, fallback)
            limit_hit = moved >= args['limit']
            factor = self._adapt(ms)
            span = int(min(max_span, max(8, span * factor)))
            if limit_hit and last_block is not None:
                lo = last_block  # the rest of this range next time (rows before it are gone)
            else:
                lo = hi
            if lo >= end:
                end = self._nblocks(rel_sql)
        self.block_span = span
        return True

    def index_sweep(self, rel_sql):
        """Batches in timestamp order, skipping locked rows, until one moves nothing."""
        sql = self._batch_sql(rel_sql, block_range=False, ordered=True, skip_locked=True)
        while True:
            if self._out_of_time():
                self.result['stopped_by_time_budget'] = True
                return False
            moved, _last, ms = self._run_batch(sql, {'cutoff': self.cutoff_text, 'limit': self.batch_size})
            self._adapt(ms)
            if moved == 0:
                return True

    def _choose_strategy(self, rel_sql):
        """(strategy, expected due rows per block) for one table.

        ``auto``: block ranges unless the planner expects few due rows for the table's size. A block
        pass reads every page of the table in order; index-ordered batches read one (random) page per
        due row. When the expected due rows are fewer than a quarter of the pages (random reads cost a
        few sequential ones), the index wins.
        """
        if self.strategy == 'index':
            return 'index', None
        plan = self._q('EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY %s WHERE %s' % (_pct(rel_sql), self._due_sql()),
                       {'cutoff': self.cutoff_text}, fetch='one')[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        expected = float(plan[0]['Plan']['Plan Rows'])
        pages = max(1, self._nblocks(rel_sql))
        if self.strategy == 'auto' and expected * 4 < pages:
            return 'index', None
        return 'block', expected / pages

    def _timed_count(self, sql, args):
        """One read-only count statement; its time goes to ``final_check_ms`` / ``worst_check_ms``."""
        started = time.monotonic()
        count = int(self._q(sql, dict(args, cutoff=self.cutoff_text), fetch='one')[0])
        ms = (time.monotonic() - started) * 1000.0
        self.result['final_check_ms'] = round(self.result['final_check_ms'] + ms, 1)
        self.result['worst_check_ms'] = round(max(self.result['worst_check_ms'], ms), 1)
        return count, max(0.5, min(2.0, self.target_ms / max(ms, 1.0)))

    def _count_by_blocks(self, rel_sql):
        """Due rows left in one table, read in block ranges (statements sized toward target_batch_ms)."""
        sql = 'SELECT count(*) FROM ONLY %s WHERE ctid >= %%(lo)s::tid AND ctid < %%(hi)s::tid AND %s' % (
            _pct(rel_sql), self._due_sql())
        left, lo, end, span = 0, 0, self._nblocks(rel_sql), self.count_span
        while lo < end:
            count, factor = self._timed_count(sql, {'lo': '(%d,0)' % lo, 'hi': '(%d,0)' % (lo + span)})
            left += count
            lo += span
            span = int(min(1000000, max(64, span * factor)))
            if lo >= end:
                end = self._nblocks(rel_sql)
        self.count_span = span
        return left

    def _move_leaf(self, rel_sql):
        """Batch one plain table; returns (complete, due rows left in it).

        After the batches, a read-only count of the due rows still there (locked elsewhere, moved by
        concurrent updates into blocks already passed, made due meanwhile). After a block pass it reads
        the table in block ranges (short statements; through the timestamp index it would visit the
        index entry of every row just moved, in one long statement); if rows are left, a second block
        pass moves what it can and the count is taken again. Index-ordered batches (few due rows) end
        with one count through the index.
        """
        self.result['passes'] += 1
        strategy, due_per_block = self._choose_strategy(rel_sql)
        self.used.add(strategy)
        if strategy == 'index':
            if not self.index_sweep(rel_sql):
                return False, None
            return True, self._timed_count('SELECT count(*) FROM ONLY %s WHERE %s' % (
                _pct(rel_sql), self._due_sql()), {})[0]
        # About batch_size due rows in the first statement (planner's estimate), at most FIRST_SPAN blocks.
        if not self.block_pass(rel_sql, int(max(8, min(FIRST_SPAN, self.batch_size / max(due_per_block, 1e-6))))):
            return False, None
        left = self._count_by_blocks(rel_sql)
        if left:
            self.result['passes'] += 1
            if not self.block_pass(rel_sql, self.block_span):
                return False, None
            left = self._count_by_blocks(rel_sql)
        return True, left

    # ------------------------------------------------------------------ run
    def finish(self):
        ms = sorted(self.batch_ms)
        if ms:
            self.result['worst_batch_ms'] = round(ms[-1], 1)
            mid = len(ms) // 2
            self.result['median_batch_ms'] = round(ms[mid] if len(ms) % 2 else (ms[mid - 1] + ms[mid]) / 2.0, 1)
        self.result['elapsed_seconds'] = round(self._elapsed(), 3)
        return self.result

    def _partial(self):
        """The result so far after an error: what moved, and what is still due (None if it cannot be counted)."""
        if self.touched:
            try:
                self.result['left_for_next_run'] = self.count_due()
            except psycopg2.Error:
                self.result['left_for_next_run'] = None
        return self.finish()

    def run(self):
        """Prepare, then move (or count in check mode). Any error: ArchiveError carrying the result so far."""
        try:
            return self._run()
        except ArchiveError as error:
            raise ArchiveError(str(error), result=self._partial())
        except psycopg2.Error as error:
            raise ArchiveError('%s failed: %s' % (self.source.display if self.source else self.source_name,
                                                  _one_line(error)), result=self._partial())

    def _run(self):
        self.prepare()
        old_parts = self.plan_partitions()
        if self.check_mode:
            due = self.count_due()
            self.result['moved'] = due   # check mode: what would move, in the keys a run returns
            self.result['partitions_to_move'] = ['%s.%s' % (p['schema'], p['name']) for p in old_parts]
            self.result['archive_created'] = bool(self.archive_missing)
            self.result['changed'] = bool(due or self.archive_missing or old_parts)
            self.result['left_for_next_run'] = due
            if self.want_diff:
                self.result['diff'] = dict(before=dict(rows_due=due), after=dict(rows_due=0))
            return self.finish()
        due_before = self.count_due() if self.want_diff else None
        self.touched = True
        if self.archive_missing:
            self._create_archive()
        self.recover()
        if old_parts:
            for part in self.plan_partitions():
                if self._out_of_time():
                    self.result['stopped_by_time_budget'] = True
                    break
                try:
                    self._move_partition(part)
                except psycopg2.Error as error:
                    self._partition_failed(part, error)
        complete = not self.result['stopped_by_time_budget']
        self.used = set()
        left = 0
        if complete:
            leaves = self._leaves()
            for rel_sql, _display in leaves:
                complete, left_here = self._move_leaf(rel_sql)
                if not complete:
                    break
                left += left_here
        self.result['strategy'] = '+'.join(sorted(self.used)) or self.strategy
        if not complete or self.skipped_leaves:
            left = self.count_due()
        self.result['left_for_next_run'] = left
        if left:
            if self.result['stopped_by_time_budget']:
                self._note('time_budget spent: %d due rows left for the next run' % left)
            else:
                self._note('%d due rows were locked by other sessions or became due during the run; '
                           'left for the next run' % left)
        if self.want_diff:
            self.result['diff'] = dict(before=dict(rows_due=due_before), after=dict(rows_due=left))
        return self.finish()


def run_archive(conn, **options):
    """Run one archive/purge; returns the result dict.

    Raises ArchiveError (one line; ``result`` holds the result so far: what moved before the error and
    ``left_for_next_run``, the due rows still in the source).
    """
    return ArchiveRun(conn, **options).run()
