# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup verification (runbook 3.2 step 5): is the newest backup there, recent and restorable?

Plain Python engine used by the ``pg_backup_verify`` module and the scheduled
maintenance job. Checks, in order of cost:

1. the newest backup exists (a file, a directory-format dump, the newest entry of
   a directory, or the newest path printed by a listing command);
2. it is recent enough (``max_age_seconds``);
3. it is readable as a dump: ``pg_restore --list`` for custom, directory and tar
   formats; the ``PostgreSQL database dump complete`` trailer for plain SQL
   (optionally gzip-compressed), read as a stream;
4. optionally, it restores into a scratch database, and the row counts of the
   named tables are compared with the source database. The scratch database is
   always dropped afterwards.

Each check's outcome is kept (``checks``: found, fresh, readable, restored) and
written as ``cerniq_backup_verify_check{check=...}`` so the alert rules can say
which one failed. ``dump_database`` makes the scheduled dump the maintenance
role's ``backup`` job runs (the lab's backups).

Passwords reach ``pg_dump``/``pg_restore``/``psql`` through the environment, never argv.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import gzip
import os
import re
import shlex
import subprocess
import time

from ansible_collections.cerniq.ops.plugins.module_utils.durations import format_duration
from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    PostgresConnectError, connect_postgres, connect_timeout_seconds)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import quote_ident, split_qualified_name

PLAIN_TRAILER = b'PostgreSQL database dump complete'
FORMATS = ('custom', 'directory', 'tar', 'plain', 'plain-gzip')


class BackupError(EngineError):
    """The backup could not be examined at all (bad options, nothing found)."""


class BackupNotFound(BackupError):
    """No backup at the configured location (the ``found`` check failed)."""


# The checks of a verification, in order; a check that did not run is left out of ``checks``.
CHECKS = ('found', 'fresh', 'readable', 'restored')


def _entry_stat(path):
    st = os.stat(path)
    if os.path.isdir(path):
        size = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                size += os.path.getsize(os.path.join(root, name))
        return st.st_mtime, size
    return st.st_mtime, st.st_size


def find_newest_backup(path=None, pattern='*', list_command=None):
    """Path, mtime and size of the newest backup; raises BackupError when there is none."""
    candidates = []
    if list_command:
        proc = subprocess.run(shlex.split(list_command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=False, timeout=300)
        if proc.returncode != 0:
            raise BackupNotFound('listing command failed (exit %d): %s' % (
                proc.returncode, proc.stderr.decode('utf-8', 'replace').strip().splitlines()[-1:] or ''))
        for line in proc.stdout.decode('utf-8', 'replace').splitlines():
            line = line.strip()
            if line and os.path.exists(line):
                candidates.append(line)
    elif path:
        if not os.path.exists(path):
            raise BackupNotFound('backup path %s does not exist' % path)
        if os.path.isfile(path) or is_directory_dump(path):
            candidates.append(path)
        else:
            for name in os.listdir(path):
                if fnmatch.fnmatch(name, pattern) and not name.startswith('.'):
                    candidates.append(os.path.join(path, name))
    else:
        raise BackupError('either path or list_command is required')
    if not candidates:
        raise BackupNotFound('no backup found in %s matching %s' % (list_command or path, pattern))
    newest = max(candidates, key=lambda item: os.stat(item).st_mtime)
    mtime, size = _entry_stat(newest)
    return newest, mtime, size


def is_directory_dump(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, 'toc.dat'))


def detect_format(path):
    if is_directory_dump(path):
        return 'directory'
    if os.path.isdir(path):
        raise BackupError('%s is a directory but not a directory-format dump (no toc.dat)' % path)
    with open(path, 'rb') as handle:
        head = handle.read(512)
    if head.startswith(b'PGDMP'):
        return 'custom'
    if head[:2] == b'\x1f\x8b':
        return 'plain-gzip'
    if len(head) >= 262 and head[257:262] == b'ustar':
        return 'tar'
    return 'plain'


def _tail_contains(stream, marker, chunk=1 << 20):
    """Whether the last bytes of a stream contain ``marker``; reads in chunks (bounded memory)."""
    tail = b''
    while True:
        block = stream.read(chunk)
        if not block:
            break
        tail = (tail + block)[-(len(marker) + 4096):]
    return marker in tail


def list_entries(path, fmt, pg_restore='pg_restore'):
    """(restorable, entries, problem) from ``pg_restore --list`` or the plain-SQL trailer."""
    if fmt in ('custom', 'directory', 'tar'):
        proc = subprocess.run([pg_restore, '--list', path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=False, timeout=600)
        if proc.returncode != 0:
            lines = proc.stderr.decode('utf-8', 'replace').strip().splitlines()
            return False, 0, 'pg_restore --list failed: %s' % (lines[0] if lines else 'exit %d' % proc.returncode)
        entries = sum(1 for line in proc.stdout.decode('utf-8', 'replace').splitlines()
                      if line.strip() and not line.startswith(';'))
        if entries == 0:
            return False, 0, 'the dump has no entries'
        return True, entries, None
    opener = gzip.open if fmt == 'plain-gzip' else open
    try:
        with opener(path, 'rb') as stream:
            complete = _tail_contains(stream, PLAIN_TRAILER)
    except (OSError, EOFError) as error:
        return False, 0, 'cannot read %s: %s' % (path, error)
    if not complete:
        return False, 0, 'plain SQL dump is truncated (no "%s" trailer)' % PLAIN_TRAILER.decode()
    return True, None, None


def _libpq_env(params):
    env = dict(os.environ)
    mapping = dict(login_host='PGHOST', login_port='PGPORT', login_user='PGUSER', login_password='PGPASSWORD',
                   ssl_mode='PGSSLMODE', ssl_rootcert='PGSSLROOTCERT', ssl_cert='PGSSLCERT', ssl_key='PGSSLKEY')
    if params.get('login_unix_socket'):
        env['PGHOST'] = params['login_unix_socket']
    for option, var in mapping.items():
        value = params.get(option)
        if value not in (None, '') and not (option == 'login_host' and params.get('login_unix_socket')):
            env[var] = str(value)
    env['PGCONNECT_TIMEOUT'] = str(connect_timeout_seconds(params))
    return env


def _count_rows(conn, tables):
    counts = {}
    with conn.cursor() as cur:
        for table in tables:
            schema, name = split_qualified_name(table)
            cur.execute('SELECT to_regclass(%s)', (quote_ident((schema or 'public', name)),))
            if cur.fetchone()[0] is None:
                counts[table] = None
                continue
            cur.execute('SELECT count(*) FROM %s' % quote_ident((schema or 'public', name)))
            counts[table] = cur.fetchone()[0]
    return counts


OBJECT_IN_USE = '55006'


def _drop_scratch(admin, scratch_db):
    """Drop the scratch database.

    A plain DROP first: it stops the autovacuum workers a fresh restore draws into the database by
    itself, where DROP ... WITH (FORCE) refuses to, for a role that is not superuser ("must be a
    member of the role whose process is being terminated or member of pg_signal_backend": the
    weekly job failed so once in the test runs). Forced only when a session still uses the database
    after the plain DROP's wait of 5 s (a restore client left behind).
    """
    with admin.cursor() as cur:
        try:
            cur.execute('DROP DATABASE IF EXISTS %s' % quote_ident(scratch_db))
        except Exception as error:  # psycopg2 is imported by pg_connection, only where installed
            if getattr(error, 'pgcode', None) != OBJECT_IN_USE:
                raise
            cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % quote_ident(scratch_db))


def restore_and_compare(path, fmt, params, tables, scratch_db, tolerance_percent,
                        pg_restore='pg_restore', psql='psql'):
    """Restore into ``scratch_db`` and compare row counts with the source; always drops the scratch DB.

    Returns ``(ok, counts, problems)`` where counts maps table -> {backup, source}.
    """
    problems = []
    admin = connect_postgres(params)
    try:
        with admin.cursor() as cur:
            cur.execute('SELECT 1 FROM pg_database WHERE datname = %s', (scratch_db,))
            if cur.fetchone():
                raise BackupError('scratch database %s already exists; refusing to overwrite it' % scratch_db)
            cur.execute('CREATE DATABASE %s' % quote_ident(scratch_db))
        env = _libpq_env(params)
        env['PGDATABASE'] = scratch_db
        try:
            if fmt in ('custom', 'directory', 'tar'):
                cmd = [pg_restore, '--no-owner', '--no-privileges', '--exit-on-error', '--dbname', scratch_db, path]
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=False)
            else:
                opener = gzip.open if fmt == 'plain-gzip' else open
                with opener(path, 'rb') as stream:
                    proc = subprocess.Popen([psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', scratch_db],
                                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, env=env)
                    try:
                        while True:
                            block = stream.read(1 << 20)
                            if not block:
                                break
                            proc.stdin.write(block)
                    except BrokenPipeError:
                        pass
                    proc.stdin.close()
                    stderr = proc.stderr.read()
                    proc.wait()
                    proc.stderr.close()
                    proc.stderr = stderr
            if proc.returncode != 0:
                lines = (proc.stderr or b'').decode('utf-8', 'replace').strip().splitlines()
                problems.append('restore into scratch database failed: %s' % (lines[0] if lines else proc.returncode))
                return False, {}, problems
            scratch_params = dict(params, login_db=scratch_db)
            scratch = connect_postgres(scratch_params)
            try:
                restored = _count_rows(scratch, tables)
            finally:
                scratch.close()
            source_conn = connect_postgres(params)
            try:
                source = _count_rows(source_conn, tables)
            finally:
                source_conn.close()
        finally:
            _drop_scratch(admin, scratch_db)
    finally:
        admin.close()
    counts = {}
    for table in tables:
        counts[table] = dict(backup=restored.get(table), source=source.get(table))
        if restored.get(table) is None:
            problems.append('table %s is missing from the restored backup' % table)
        elif source.get(table) is not None:
            base = max(source[table], 1)
            if abs(source[table] - restored[table]) * 100.0 / base > tolerance_percent:
                problems.append('table %s: %d rows in the backup, %d in the source (more than %s%% apart)' % (
                    table, restored[table], source[table], tolerance_percent))
    return not problems, counts, problems


def verify_backup(path=None, pattern='*', list_command=None, max_age_seconds=None, restore=False,
                  params=None, tables=(), scratch_db='cerniq_restore_check', tolerance_percent=10.0,
                  pg_restore='pg_restore', psql='psql', now=None):
    """Run the checks; returns a result dict with ``verified`` and ``problems``."""
    now = time.time() if now is None else now
    if restore and not params:
        raise BackupError('a restore check needs connection parameters')
    try:
        backup, mtime, size = find_newest_backup(path, pattern, list_command)
    except BackupNotFound as error:
        return dict(backup=None, format=None, size_bytes=None, mtime=None, age_seconds=None, entries=None,
                    restored=False, row_counts={}, problems=[str(error)], checks=dict(found=False), verified=False)
    checks = dict(found=True)
    result = dict(backup=backup, format=None, size_bytes=size, mtime=mtime, age_seconds=int(now - mtime),
                  entries=None, restored=False, row_counts={}, problems=[], checks=checks)
    if max_age_seconds is not None:
        checks['fresh'] = now - mtime <= max_age_seconds
        if not checks['fresh']:
            result['problems'].append('newest backup is %s old (more than max_age %s)' % (
                format_duration(now - mtime), format_duration(max_age_seconds)))
    try:
        fmt = detect_format(backup)
        restorable, entries, problem = list_entries(backup, fmt, pg_restore)
    except (BackupError, OSError) as error:
        fmt, restorable, entries, problem = None, False, None, str(error)
    result.update(format=fmt, entries=entries)
    checks['readable'] = restorable
    if problem:
        result['problems'].append(problem)
    if restore and restorable:
        try:
            ok, counts, problems = restore_and_compare(backup, fmt, params, list(tables), scratch_db,
                                                       tolerance_percent, pg_restore, psql)
        except (BackupError, PostgresConnectError) as error:
            ok, counts, problems = False, {}, ['restore check failed: %s' % error]
        result['restored'] = checks['restored'] = ok
        result['row_counts'] = counts
        result['problems'].extend(problems)
    result['verified'] = not result['problems']
    return result


def backup_metrics(result, task='backup', now=None, previous_success=None):
    """Textfile metrics for a verification result (see textfile_metrics.render).

    ``previous_success`` (from the file being replaced) is carried over when this
    run failed, so the last-success timestamp survives failed runs.
    """
    now = time.time() if now is None else now
    labels = dict(task=task)
    metrics = [
        ('cerniq_backup_verify_success', 'Whether the last backup verification passed (1) or not (0).', 'gauge',
         labels, 1 if result.get('verified') else 0),
        ('cerniq_backup_verify_timestamp_seconds', 'When the last backup verification ran.', 'gauge', labels, now),
    ]
    checks = result.get('checks') or {}
    for check in CHECKS:
        if check in checks:
            metrics.append(('cerniq_backup_verify_check',
                            'Outcome of each check of the last verification (1 passed, 0 failed; absent: not run).',
                            'gauge', dict(labels, check=check), 1 if checks[check] else 0))
    if result.get('mtime') is not None:
        metrics += [
            ('cerniq_backup_newest_timestamp_seconds', 'Modification time of the newest backup.', 'gauge', labels,
             result['mtime']),
            ('cerniq_backup_size_bytes', 'Size of the newest backup.', 'gauge', labels, result.get('size_bytes') or 0),
        ]
    last_success = now if result.get('verified') else previous_success
    if last_success is not None:
        metrics.append(('cerniq_backup_last_success_timestamp_seconds', 'When a backup last verified successfully.',
                        'gauge', labels, last_success))
    return metrics


def dump_database(params, directory, prefix, keep=7, pg_dump='pg_dump', now=None):
    """``pg_dump --format=custom`` of ``params['login_db']`` into ``directory``, then keep the newest ``keep``.

    The dump is written under a hidden temporary name (ignored by ``find_newest_backup``)
    and renamed to ``<prefix>-<UTC time>.dump`` only once pg_dump succeeded, so a failed or
    killed run never leaves a file that looks like a backup. Only files of that exact
    pattern are pruned. Returns path, size_bytes and the pruned paths.
    """
    if not os.path.isdir(directory):
        raise BackupError('backup directory %s does not exist' % directory)
    if int(keep) < 1:
        raise BackupError('keep must be at least 1, got %r' % keep)
    if not params.get('login_db'):
        raise BackupError('the dump needs login_db (the database to dump)')
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(time.time() if now is None else now))
    final = os.path.join(directory, '%s-%s.dump' % (prefix, stamp))
    partial = os.path.join(directory, '.%s-%s.dump.partial' % (prefix, stamp))
    env = _libpq_env(params)
    env['PGDATABASE'] = params['login_db']
    try:
        proc = subprocess.run([pg_dump, '--format=custom', '--no-password', '--file', partial],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=False)
        if proc.returncode != 0:
            lines = proc.stderr.decode('utf-8', 'replace').strip().splitlines()
            raise BackupError('pg_dump failed: %s' % (lines[0] if lines else 'exit %d' % proc.returncode))
        with open(partial, 'rb') as handle:
            os.fsync(handle.fileno())
        os.rename(partial, final)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    ours = re.compile(r'^%s-\d{8}T\d{6}Z\.dump$' % re.escape(prefix))
    dumps = sorted(name for name in os.listdir(directory) if ours.match(name))
    pruned = [os.path.join(directory, name) for name in dumps[:-int(keep)]]
    for old in pruned:
        os.unlink(old)
    return dict(path=final, size_bytes=os.path.getsize(final), pruned=pruned)
