# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VACUUM, ANALYZE and REINDEX on a live PostgreSQL database, politely.

Plain Python (psycopg2 only): the ``pg_maintenance`` module, the scheduled
maintenance job and the tests call the same code.

Rules this engine keeps (see docs/pg_maintenance.md):

* autocommit: VACUUM and REINDEX CONCURRENTLY cannot run in a transaction block;
* every object is resolved from the catalog first and its SQL is built from
  quoted identifiers; an unknown object refuses the whole run before anything
  is executed;
* per object, ``lock_timeout`` starts short ('100ms') and doubles up to a cap
  ('1s') between retries with backoff, inside a per-object budget; an object
  whose lock cannot be had within the budget is *skipped* with a reason and the
  run goes on.  While we sleep between attempts we hold no place in any lock
  queue, so sessions arriving behind us are never queued behind our request for
  longer than the current ``lock_timeout``;
* ``statement_timeout`` per object (session setting, reset afterwards);
* other sessions are never cancelled or terminated;
* VACUUM FULL only with ``allow_vacuum_full`` (and a warning: it holds ACCESS
  EXCLUSIVE for the whole rewrite);
* REINDEX defaults to CONCURRENTLY; refused on PostgreSQL 14.0-14.3 (a bug
  there could corrupt concurrently built indexes);
* after a failed REINDEX CONCURRENTLY, the ``*_ccnew*``/``*_ccold*`` invalid
  indexes this attempt left are dropped (invalid indexes present before the
  attempt, and any table with a build in progress in another session, are left
  alone);
* check mode runs nothing but catalog look-ups and returns the plan.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import re
import time

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option, format_duration
from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import execute, fetch_all, quote_ident, split_qualified_name

ACTIONS = ('vacuum', 'analyze', 'reindex', 'drop_invalid_index')

# The settings of a run: durations with a unit, as the module's options take them.
DEFAULTS = dict(
    lock_timeout='100ms',         # first attempt
    lock_timeout_max='1s',        # cap while doubling
    lock_wait_budget='30s',       # per object, spent trying to get its locks
    statement_timeout='1h',       # per statement; '0s' = none (PostgreSQL's meaning)
    cleanup_budget='1m',          # to drop what a failed REINDEX CONCURRENTLY left
    time_budget=None,             # for the whole run; unset = no limit
)

LOCK_NOT_AVAILABLE = '55P03'
QUERY_CANCELED = '57014'
CC_LEFTOVER = re.compile(r'_cc(new|old)[0-9]*$')

TABLE_KINDS = ('r', 'm', 'p')
INDEX_KINDS = ('i', 'I')
MAX_TIMEOUT = 2147483.647     # seconds: PostgreSQL's limit for lock_timeout / statement_timeout (2^31-1 ms)
MAX_BUDGET = 30 * 86400.0
OUTCOMES = ('done', 'skipped', 'failed', 'planned', 'absent')


class MaintenanceError(EngineError):
    """Bad input or an unknown object: nothing was executed."""


def cc_kind(index_name):
    """'ccnew' / 'ccold' for REINDEX CONCURRENTLY leftovers, else None."""
    match = CC_LEFTOVER.search(index_name or '')
    return 'cc' + match.group(1) if match else None


def _one_line(error):
    text = getattr(error, 'pgerror', None) or str(error)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return error.__class__.__name__
    return lines[0].replace('ERROR:  ', '').replace('ERROR: ', '')


# --------------------------------------------------------------------------- tasks

def normalize_task(spec):
    """Validate one task dict; returns a new dict with every option filled in.

    Keys: ``action`` (vacuum|analyze|reindex|drop_invalid_index), ``table`` or
    ``index``; vacuum options ``analyze`` (default true), ``freeze``, ``full``,
    ``truncate`` (default false), ``skip_locked`` (default false); reindex
    option ``concurrently`` (default true).
    """
    if not isinstance(spec, dict):
        raise MaintenanceError('each task must be a mapping, got %r' % (spec,))
    action = spec.get('action')
    if action not in ACTIONS:
        raise MaintenanceError('task action must be one of %s, got %r' % (', '.join(ACTIONS), action))
    table, index = spec.get('table'), spec.get('index')
    if bool(table) == bool(index):
        raise MaintenanceError('task %s needs exactly one of table or index' % action)
    if action in ('vacuum', 'analyze') and not table:
        raise MaintenanceError('%s works on a table: set table, not index' % action)
    if action == 'drop_invalid_index' and not index:
        raise MaintenanceError('drop_invalid_index needs index')
    task = dict(
        action=action, table=table, index=index,
        analyze=spec.get('analyze') is not False,          # default true
        freeze=bool(spec.get('freeze')), full=bool(spec.get('full')),
        truncate=bool(spec.get('truncate')), skip_locked=bool(spec.get('skip_locked')),
        concurrently=spec.get('concurrently') is not False,  # default true
        reason=spec.get('reason'),
    )
    name = table or index
    try:
        split_qualified_name(name)
    except ValueError as error:
        raise MaintenanceError('task %s: %s' % (action, error))
    return task


def resolve_relation(conn, name, kinds):
    """Catalog row for ``[schema.]name`` of one of ``kinds`` or None.

    Unqualified names follow the session's search_path. Returns a dict with
    oid, schema, name, relkind, table_oid (the index's table for indexes).
    """
    schema, rel = split_qualified_name(name)
    if schema is None:
        rows = fetch_all(conn, """
            SELECT c.oid, n.nspname, c.relname, c.relkind
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)""", (rel,))
    else:
        rows = fetch_all(conn, """
            SELECT c.oid, n.nspname, c.relname, c.relkind
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = %s AND n.nspname = %s""", (rel, schema))
    if not rows:
        return None
    oid, nsp, relname, relkind = rows[0]
    if relkind not in kinds:
        return dict(oid=oid, schema=nsp, name=relname, relkind=relkind, wrong_kind=True)
    info = dict(oid=oid, schema=nsp, name=relname, relkind=relkind, table_oid=oid, wrong_kind=False)
    if relkind in INDEX_KINDS:
        row = fetch_all(conn, """
            SELECT i.indrelid, i.indisvalid, n.nspname, c.relname
            FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE i.indexrelid = %s""", (oid,))[0]
        info.update(table_oid=row[0], valid=row[1], table_schema=row[2], table_name=row[3])
    return info


def build_sql(task, rel):
    """The SQL statement of a resolved task (identifiers quoted)."""
    ident = quote_ident((rel['schema'], rel['name']))
    action = task['action']
    if action == 'vacuum':
        options = []
        if task['full']:
            options.append('FULL')
        if task['freeze']:
            options.append('FREEZE')
        if task['analyze']:
            options.append('ANALYZE')
        if task['skip_locked']:
            options.append('SKIP_LOCKED')
        if not task['full']:
            options.append('TRUNCATE %s' % ('true' if task['truncate'] else 'false'))
        return 'VACUUM (%s) %s' % (', '.join(options), ident)
    if action == 'analyze':
        return 'ANALYZE %s%s' % ('(SKIP_LOCKED) ' if task['skip_locked'] else '', ident)
    if action == 'reindex':
        kind = 'INDEX' if rel['relkind'] in INDEX_KINDS else 'TABLE'
        return 'REINDEX %s %s%s' % (kind, 'CONCURRENTLY ' if task['concurrently'] else '', ident)
    if action == 'drop_invalid_index':
        return 'DROP INDEX CONCURRENTLY IF EXISTS %s' % ident
    raise MaintenanceError('unknown action %r' % action)


def lock_level(task):
    """The strongest lock the statement takes on the table (for the report)."""
    if task['action'] == 'vacuum' and task['full']:
        return 'ACCESS EXCLUSIVE'
    if task['action'] == 'reindex' and not task['concurrently']:
        return 'ACCESS EXCLUSIVE (index) / SHARE (table)'
    return 'SHARE UPDATE EXCLUSIVE'


def concurrent_reindex_broken(server_version_num):
    """PostgreSQL 14.0-14.3 could corrupt indexes built CONCURRENTLY."""
    return 140000 <= int(server_version_num) < 140004


# --------------------------------------------------------------------------- invalid-index bookkeeping

def table_invalid_indexes(conn, table_oid):
    """{oid: (schema, name)} of invalid indexes of a table and its TOAST table."""
    rows = fetch_all(conn, """
        SELECT i.indexrelid, n.nspname, c.relname
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT i.indisvalid
          AND i.indrelid IN (%s, (SELECT t.reltoastrelid FROM pg_catalog.pg_class t WHERE t.oid = %s))""",
                     (table_oid, table_oid))
    return dict((row[0], (row[1], row[2])) for row in rows)


def build_in_progress(conn, table_oid):
    """PIDs of other sessions building an index on the table (or its TOAST table) now."""
    rows = fetch_all(conn, """
        SELECT p.pid FROM pg_catalog.pg_stat_progress_create_index p
        WHERE p.pid <> pg_catalog.pg_backend_pid()
          AND p.relid IN (%s, (SELECT t.reltoastrelid FROM pg_catalog.pg_class t WHERE t.oid = %s))""",
                     (table_oid, table_oid))
    return [row[0] for row in rows]


def check_tasks(tasks):
    """Normalize every task; raise MaintenanceError listing every problem (no server needed)."""
    if not isinstance(tasks, (list, tuple)):
        raise MaintenanceError('tasks must be a list of mappings, got %r' % (tasks,))
    normalized, problems = [], []
    for spec in tasks:
        try:
            normalized.append(normalize_task(spec))
        except MaintenanceError as error:
            problems.append(str(error))
    if problems:
        raise MaintenanceError('; '.join(problems))
    return normalized


def check_settings(settings):
    """DEFAULTS overridden by ``settings`` (None = default), checked; MaintenanceError (one line) if refused.

    Returns the values in the units the runner uses: ``lock_timeout_ms``, ``lock_timeout_max_ms`` (int),
    ``lock_wait_budget``, ``statement_timeout``, ``cleanup_budget`` (seconds) and ``time_budget`` (seconds or
    None for no limit).
    """
    merged = dict(DEFAULTS)
    for key, value in settings.items():
        if key not in DEFAULTS:
            raise MaintenanceError('unknown setting %s' % key)
        if value is not None:
            merged[key] = value
    try:
        lock_timeout = duration_option(merged['lock_timeout'], 'lock_timeout', 0.001, MAX_TIMEOUT)
        lock_timeout_max = duration_option(merged['lock_timeout_max'], 'lock_timeout_max', lock_timeout, MAX_TIMEOUT)
        checked = dict(
            lock_timeout_ms=int(round(lock_timeout * 1000)),
            lock_timeout_max_ms=int(round(lock_timeout_max * 1000)),
            statement_timeout=duration_option(merged['statement_timeout'], 'statement_timeout', 0, MAX_TIMEOUT),
            time_budget=duration_option(merged['time_budget'], 'time_budget', 1, MAX_BUDGET, optional=True))
        for key in ('lock_wait_budget', 'cleanup_budget'):
            checked[key] = duration_option(merged[key], key, 0, MAX_BUDGET)
    except DurationError as error:
        raise MaintenanceError(str(error))
    return checked


# --------------------------------------------------------------------------- the runner

class MaintenanceRunner(object):
    """Runs normalized tasks on one autocommit connection.

    ``sleep`` and ``clock`` are injectable so a scheduler can account time its own way.
    """

    def __init__(self, conn, allow_vacuum_full=False, check_mode=False, sleep=time.sleep,
                 clock=time.monotonic, **settings):
        self.conn = conn
        self.allow_vacuum_full = allow_vacuum_full
        self.check_mode = check_mode
        self.sleep = sleep
        self.clock = clock
        self.settings = check_settings(settings)
        self.warnings = []

    # ---- planning
    def plan(self, tasks):
        """Normalize and resolve every task; raise MaintenanceError listing every problem.

        An index to drop with drop_invalid_index that does not exist (any more) is planned as ``absent``:
        there is nothing to do, so a second run is ok and unchanged.
        """
        normalized, problems = check_tasks(tasks), []
        version = int(self.conn.server_version)
        planned = []
        for task in normalized:
            name = task['table'] or task['index']
            if task['action'] in ('vacuum', 'analyze'):
                kinds, what = TABLE_KINDS, 'table'
            elif task['action'] == 'drop_invalid_index' or task['index']:
                kinds, what = INDEX_KINDS, 'index'
            else:
                kinds, what = TABLE_KINDS, 'table'
            rel = resolve_relation(self.conn, name, kinds)
            if rel is None and task['action'] == 'drop_invalid_index':
                planned.append(dict(task=task, rel=None, sql=None, name=name))
                continue
            if rel is None:
                problems.append('%s %r does not exist' % (what, name))
                continue
            if rel['wrong_kind']:
                problems.append('%r is not a %s (relkind %s)' % (name, what, rel['relkind']))
                continue
            if task['action'] == 'vacuum' and task['full'] and not self.allow_vacuum_full:
                problems.append('VACUUM FULL of %r refused: it holds an ACCESS EXCLUSIVE lock for the whole '
                                'rewrite; set allow_vacuum_full to run it (or use pg_repack)' % name)
                continue
            if task['action'] == 'reindex' and task['concurrently'] and concurrent_reindex_broken(version):
                problems.append('REINDEX CONCURRENTLY of %r refused on PostgreSQL %s (14.0-14.3 can corrupt '
                                'concurrently built indexes; upgrade to 14.4+)' % (name, version))
                continue
            if task['action'] == 'drop_invalid_index' and rel.get('valid'):
                problems.append('index %r is valid: drop_invalid_index only drops invalid indexes' % name)
                continue
            step = dict(task=task, rel=rel, sql=build_sql(task, rel))
            planned.append(step)
        if problems:
            raise MaintenanceError('; '.join(problems))
        return planned

    # ---- helpers
    def _set_timeouts(self, lock_ms):
        statement_ms = int(float(self.settings['statement_timeout']) * 1000)
        execute(self.conn, 'SET lock_timeout = %s', ('%dms' % max(1, int(lock_ms)),))
        execute(self.conn, 'SET statement_timeout = %s', ('%dms' % max(0, statement_ms),))

    def _reset_timeouts(self):
        try:
            execute(self.conn, 'RESET lock_timeout')
            execute(self.conn, 'RESET statement_timeout')
        except Exception:  # connection gone: nothing to reset
            pass

    def _with_lock_retries(self, sql, budget, on_lock_failure=None):
        """Run ``sql`` retrying lock timeouts inside ``budget`` seconds.

        Returns (outcome, attempts, error) with outcome 'done', 'lock' (budget spent) or 'error'.
        """
        start = self.clock()
        deadline = start + float(budget)
        lock_ms = int(self.settings['lock_timeout_ms'])
        attempts = 0
        while True:
            attempts += 1
            remaining_ms = (deadline - self.clock()) * 1000.0
            this_ms = max(1, int(min(lock_ms, max(remaining_ms, 1))))
            try:
                self._set_timeouts(this_ms)
                del self.conn.notices[:]
                execute(self.conn, sql)
                return 'done', attempts, None
            except Exception as error:  # psycopg2.Error, kept import-free here
                code = getattr(error, 'pgcode', None)
                if code != LOCK_NOT_AVAILABLE:
                    return 'error', attempts, error
                if on_lock_failure is not None:
                    on_lock_failure()
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return 'lock', attempts, error
                # Back off: step out of every lock queue for about as long as we waited.
                pause = min(remaining, (this_ms / 1000.0) * random.uniform(0.5, 1.0))
                self.sleep(pause)
                if deadline - self.clock() <= 0:
                    return 'lock', attempts, error
                lock_ms = min(lock_ms * 2, int(self.settings['lock_timeout_max_ms']))

    def _cleanup_after_reindex(self, table_oid, before):
        """Drop the _ccnew/_ccold invalid indexes a failed REINDEX CONCURRENTLY of ours left."""
        dropped, left = [], []
        try:
            after = table_invalid_indexes(self.conn, table_oid)
        except Exception as error:
            return dropped, [dict(index=None, reason='cannot list invalid indexes: %s' % _one_line(error))]
        created = [(oid, names) for oid, names in sorted(after.items())
                   if oid not in before and cc_kind(names[1])]
        if not created:
            return dropped, left
        busy = build_in_progress(self.conn, table_oid)
        for oid, names in created:
            qualified = '%s.%s' % names
            if busy:
                left.append(dict(index=qualified, reason='another session (pid %s) is building an index on this '
                                                         'table; not touched' % ', '.join(str(p) for p in busy)))
                continue
            sql = 'DROP INDEX CONCURRENTLY IF EXISTS %s' % quote_ident(names)
            outcome, attempts, error = self._with_lock_retries(sql, self.settings['cleanup_budget'])
            if outcome == 'done':
                dropped.append(qualified)
            else:
                reason = 'drop failed: %s' % ('lock not available within cleanup budget' if outcome == 'lock'
                                              else _one_line(error))
                if names[0] == 'pg_toast' and 'permission denied' in reason:
                    reason += ' (only a superuser can drop an invalid TOAST index: run drop_invalid_index as one)'
                left.append(dict(index=qualified, reason=reason))
        return dropped, left

    # ---- running
    def run(self, tasks):
        """Plan, then run (unless check mode). Returns ``dict(operations=[one per task, in order], summary=
        {outcome: count}, changed, warnings, check_mode)``."""
        steps = self.plan(tasks)
        results = []
        run_start = self.clock()
        budget = self.settings['time_budget']
        for step in steps:
            task, rel = step['task'], step['rel']
            if rel is None:
                results.append(dict(action=task['action'], object=step['name'], kind='index', sql=None,
                                    lock=None, duration_ms=0, attempts=0, result='absent',
                                    reason='index does not exist (already dropped): nothing to do'))
                continue
            result = dict(action=task['action'], object='%s.%s' % (rel['schema'], rel['name']),
                          kind='index' if rel['relkind'] in INDEX_KINDS else 'table',
                          sql=step['sql'], lock=lock_level(task), duration_ms=0, attempts=0,
                          result='planned' if self.check_mode else None, reason=task.get('reason'))
            if task['action'] == 'vacuum' and task['full']:
                self.warnings.append('VACUUM FULL of %s holds an ACCESS EXCLUSIVE lock for the whole rewrite: '
                                     'every read and write of the table waits until it ends' % result['object'])
            if self.check_mode:
                results.append(result)
                continue
            if budget is not None and self.clock() - run_start >= budget:
                result.update(result='skipped', reason='time_budget of %s spent before this object'
                              % format_duration(budget))
                results.append(result)
                continue
            if getattr(self.conn, 'closed', 0):
                result.update(result='skipped', reason='connection lost earlier in the run')
                results.append(result)
                continue
            try:
                results.append(self._run_step(step, result))
            except Exception as error:  # connection lost or catalog read failed: report, go on if possible
                result.update(result='failed', reason=_one_line(error))
                results.append(result)
        self._reset_timeouts()
        summary = dict((outcome, 0) for outcome in OUTCOMES)
        for result in results:
            summary[result['result']] = summary.get(result['result'], 0) + 1
        changed = summary['done'] > 0 or (self.check_mode and summary['planned'] > 0)
        return dict(operations=results, summary=summary, changed=changed,
                    warnings=list(self.warnings), check_mode=self.check_mode)

    def _run_step(self, step, result):
        task, rel = step['task'], step['rel']
        is_cc_reindex = task['action'] == 'reindex' and task['concurrently']
        before = {}
        if is_cc_reindex:
            before = table_invalid_indexes(self.conn, rel['table_oid'])
        cleanup = dict(dropped=[], left=[])

        def clean():
            if is_cc_reindex:
                dropped, left = self._cleanup_after_reindex(rel['table_oid'], before)
                cleanup['dropped'].extend(dropped)
                cleanup['left'].extend(left)

        if task['action'] == 'drop_invalid_index':
            busy = build_in_progress(self.conn, rel['table_oid'])
            if busy:
                result.update(result='skipped', reason='index build in progress on the table (pid %s)' % (
                    ', '.join(str(p) for p in busy)))
                return result
        start = self.clock()
        outcome, attempts, error = self._with_lock_retries(step['sql'], self.settings['lock_wait_budget'],
                                                           on_lock_failure=clean)
        result['attempts'] = attempts
        if outcome == 'done':
            skipped_notice = [n for n in self.conn.notices if 'skipping' in n.lower()]
            if skipped_notice and task['action'] == 'drop_invalid_index':
                result.update(result='absent', reason='index dropped meanwhile by another session: nothing to do')
            elif skipped_notice:
                result.update(result='skipped', reason=skipped_notice[0].strip().replace('WARNING:  ', ''))
            else:
                result.update(result='done')
        elif outcome == 'lock':
            result.update(result='skipped', reason='lock not available within %s (%d attempts, lock_timeout up to '
                                                   '%s); other sessions were not disturbed' % (
                                                       format_duration(self.settings['lock_wait_budget']), attempts,
                                                       format_duration(self.settings['lock_timeout_max_ms'] / 1000.0)))
        else:
            if not getattr(self.conn, 'closed', 0):
                clean()
            reason = _one_line(error)
            if getattr(error, 'pgcode', None) == QUERY_CANCELED and 'statement timeout' in reason:
                reason = 'statement_timeout (%s) reached: %s' % (format_duration(self.settings['statement_timeout']),
                                                                 reason)
            result.update(result='failed', reason=reason)
        result['duration_ms'] = int(round((self.clock() - start) * 1000))
        if is_cc_reindex and (cleanup['dropped'] or cleanup['left']):
            result['cleanup'] = cleanup
            if cleanup['left']:
                self.warnings.append('invalid index(es) left after a failed REINDEX CONCURRENTLY of %s: %s' % (
                    result['object'], '; '.join('%s (%s)' % (x['index'], x['reason']) for x in cleanup['left'])))
        return result


def run_maintenance(conn, tasks, check_mode=False, allow_vacuum_full=False, **settings):
    """Convenience wrapper: ``MaintenanceRunner(...).run(tasks)``."""
    runner = MaintenanceRunner(conn, allow_vacuum_full=allow_vacuum_full, check_mode=check_mode, **settings)
    return runner.run(tasks)


# What targets=auto may do with the health report's candidates (pg_health.maintenance_tasks).
AUTO_ACTIONS = ('vacuum', 'freeze', 'reindex', 'cleanup_invalid')


def tasks_from_health(report, actions=AUTO_ACTIONS):
    """Turn a pg_health report (sections vacuum_candidates and reindex_candidates) into tasks."""
    tasks = []
    for row in report.get('vacuum_candidates') or []:
        name = '%s.%s' % (quote_ident(row['schema']), quote_ident(row['table']))
        needs_freeze = 'freeze' in row.get('reasons', [])
        needs_vacuum = 'dead_tuples' in row.get('reasons', [])
        if needs_freeze and 'freeze' in actions:
            tasks.append(dict(action='vacuum', table=name, analyze=needs_vacuum, freeze=True,
                              reason='; '.join(row.get('why', []))))
        elif needs_vacuum and 'vacuum' in actions:
            tasks.append(dict(action='vacuum', table=name, analyze=True, reason='; '.join(row.get('why', []))))
    for row in report.get('reindex_candidates') or []:
        name = '%s.%s' % (quote_ident(row['schema']), quote_ident(row['index']))
        if row.get('action') == 'drop_invalid_index':
            if 'cleanup_invalid' in actions:
                tasks.append(dict(action='drop_invalid_index', index=name, reason=row.get('reason')))
        elif 'reindex' in actions:
            tasks.append(dict(action='reindex', index=name, concurrently=True, reason=row.get('reason')))
    return tasks
