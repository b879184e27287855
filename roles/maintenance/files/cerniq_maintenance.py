"""cerniq-maintenance: run one scheduled maintenance job of the CERNIQ runbook (3.1, 3.2).

Installed by the cerniq.ops.maintenance role; the steps call the collection's own
engines (copied next to this script), so the SQL and Redis logic exists once.

    cerniq-maintenance --config /etc/cerniq/maintenance/daily.json [--dry-run]

- The job configuration lists steps; each step type is one function of the table STEPS, calling
  the engine the matching module calls (auto_maintenance: the same health report -> tasks
  composition as pg_maintenance targets=auto, pg_health.maintenance_tasks).
- A lock (flock on the job's lock file): a run started while another holds it
  logs that and exits 0 without doing anything.
- A run timeout: past it the current step is interrupted, the run fails.
- Credentials come from a 0600 file (KEY=VALUE), never the command line.
- Log lines go to the job's log file (and stdout); node_exporter textfile
  metrics are written atomically at the end of every run.
- With an Alertmanager configured (``silence`` in the job configuration), the run is a
  maintenance window: the alerts it may cause on this host are silenced for the run's timeout
  plus a margin, and the silence is expired when the run ends - failed, timed out or
  terminated (SIGTERM) included. Alertmanager not answering is logged; the run goes on.
"""

import argparse
import contextlib
import fcntl
import json
import os
import signal
import sys
import threading
import time
import traceback

DEFAULT_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'lib')


class Watchdog(object):
    """At the deadline, cancel the statements of every open PostgreSQL connection of the run.

    A signal handler would only run after the blocking libpq call returns; a
    thread calling ``connection.cancel()`` (PQcancel) interrupts it at once.
    A cancel reaches only the statement running at that moment: one sent while a
    step was connecting, or between two statements, is lost. So past the deadline
    the thread cancels again every RECANCEL_MS milliseconds until the run stops it, and no
    new connection is handed out.
    """

    RECANCEL_MS = 500

    def __init__(self, seconds):
        self.seconds = seconds
        self.timed_out = False
        self.connections = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name='cerniq-watchdog', daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopped.set()

    def _run(self):
        if self._stopped.wait(self.seconds):
            return
        self.timed_out = True
        while True:
            for conn in list(self.connections):
                try:
                    conn.cancel()
                except Exception:  # pylint: disable=broad-except
                    pass  # closed meanwhile
            if self._stopped.wait(self.RECANCEL_MS / 1000.0):
                return

    def watch(self, conn):
        if self.timed_out:
            conn.close()
            raise RuntimeError('no new PostgreSQL work after the run timeout')
        self.connections.append(conn)
        return conn


class Log(object):
    def __init__(self, path, job):
        self.job = job
        self.handle = open(path, 'a') if path else None

    def __call__(self, message):
        line = '%s %s[%d] %s' % (time.strftime('%Y-%m-%dT%H:%M:%S%z'), self.job, os.getpid(), message)
        print(line, flush=True)
        if self.handle:
            self.handle.write(line + '\n')
            self.handle.flush()


class CredentialsError(ValueError):
    """A line of the credentials file that cannot be read."""


def read_credentials(path):
    """NAME=value lines; a value the role wrote is a JSON string (a password may hold spaces at
    either end, quotes or line breaks), a hand-written one is taken as it stands."""
    values = {}
    if not path:
        return values
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip('\r\n')
            if not line.strip() or line.lstrip().startswith('#') or '=' not in line:
                continue
            key, value = line.split('=', 1)
            if value.startswith('"'):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
                if not isinstance(value, str):
                    raise CredentialsError('credentials file %s, line %d: %s is not a JSON string'
                                           % (path, number, key.strip()))
            values[key.strip()] = value
    return values


def connection_params(config, credentials):
    pg = dict(config.get('postgres') or {})
    if credentials.get('PGPASSWORD'):
        pg['login_password'] = credentials['PGPASSWORD']
    redis_params = dict(config.get('redis') or {})
    if credentials.get('REDIS_PASSWORD'):
        redis_params['redis_password'] = credentials['REDIS_PASSWORD']
    return pg, redis_params


# The module's example file name: one file whoever verifies (this job or the pg_backup_verify module).
BACKUP_METRICS_FILE = 'cerniq_backup.prom'


class Run(object):
    """What every step works with: the connection settings, the run's deadline, dry run or not, the engines."""

    def __init__(self, pg, redis_params, deadline, dry_run, engines, watchdog, textfile_dir=None):
        self.pg = pg
        self.redis_params = redis_params
        self.deadline = deadline
        self.dry_run = dry_run
        self.engines = engines
        self.watchdog = watchdog
        self.textfile_dir = textfile_dir

    def remaining(self):
        """Whole seconds left before the run's timeout (at least 1)."""
        return max(1, int(self.deadline - time.monotonic()))

    @contextlib.contextmanager
    def postgres(self):
        """A PostgreSQL connection the watchdog cancels at the deadline, closed afterwards."""
        conn = self.watchdog.watch(self.engines.connect_postgres(self.pg))
        try:
            yield conn
        finally:
            conn.close()


# Steps: each takes (run, options) and returns (summary, counters) or raises with a one-line reason.

# Up to this many objects are named one by one in a step's log line; beyond, counted.
NAMED_OBJECTS = 20


def maintain(run, conn, tasks, options):
    """Run pg_maintenance tasks; a failed object fails the step. The summary names the objects
    (beyond NAMED_OBJECTS, only those not done) with the reason of each skipped or failed one."""
    results = run.engines.run_maintenance(conn, tasks, check_mode=run.dry_run, **options).get('operations', [])
    counts = {}
    for row in results:
        counts[row.get('result')] = counts.get(row.get('result'), 0) + 1
    named = results if len(results) <= NAMED_OBJECTS else [r for r in results if r.get('result') in ('skipped', 'failed')]
    summary = ', '.join('%d %s' % (n, result) for result, n in sorted(counts.items())) or 'nothing to do'
    if named:
        summary += ': ' + ', '.join('%s %s: %s%s' % (r.get('action'), r.get('object'), r.get('result'),
                                                     ' (%s)' % r['reason'] if r.get('reason') else '') for r in named)
    if counts.get('failed'):
        raise RuntimeError(summary)
    return summary, {}


def step_maintenance(run, options):
    """The configured tasks (vacuum, analyze, reindex ...) through pg_maintenance."""
    with run.postgres() as conn:
        return maintain(run, conn, options.pop('tasks'), options)


def step_analyze_database(run, options):
    """Runbook 3.2 step 3, ``ANALYZE;``: every table of the database (or of ``schemas``), listed at run time."""
    with run.postgres() as conn:
        tasks = [{'action': 'analyze', 'table': table}
                 for table in database_tables(run.engines, conn, options.pop('schemas', None))]
        return maintain(run, conn, tasks, options)


def step_auto_maintenance(run, options):
    """Vacuum, freeze, reindex, drop invalid indexes exactly where the health report finds the need."""
    with run.postgres() as conn:
        tasks, _report = run.engines.maintenance_tasks(conn, actions=options.pop('actions', run.engines.auto_actions),
                                                       thresholds=options.pop('thresholds', None),
                                                       schemas=options.pop('schemas', None))
        if not tasks:
            return 'nothing needed (no bloated or invalid index, no vacuum candidate)', {}
        return maintain(run, conn, tasks, options)


def step_archive(run, options):
    """Archive or purge rows older than a cutoff, in short batches, within the run's time left."""
    options.setdefault('time_budget', '%ds' % run.remaining())
    with run.postgres() as conn:
        result = run.engines.run_archive(conn, check_mode=run.dry_run, **options)
    moved = int(result.get('moved') or 0)   # in a dry run: the rows that would move
    counter = 'rows_archived' if options.get('archive_table') else 'rows_purged'
    summary = '%s rows %s (cutoff %s, %s batches, worst transaction %s ms)' % (
        moved,
        'would move' if run.dry_run else ('archived' if counter == 'rows_archived' else 'purged'),
        result.get('cutoff'), result.get('batches'), result.get('worst_batch_ms'))
    return summary, {counter: 0 if run.dry_run else moved}


def step_redis_keys(run, options):
    """Delete the keys matching patterns (runbook 3.1 step 4), refused above max_keys."""
    client = run.engines.connect_redis(run.redis_params)
    result = run.engines.delete_keys(client, options.pop('patterns'), dry_run=run.dry_run, **options)
    deleted = int(result.get('deleted') or 0)
    return '%s keys matched, %d deleted' % (result.get('matched'), deleted), {'keys_deleted': deleted}


def step_orphan_checks(run, options):
    """The health report's orphan checks (runbook 3.2 step 4): counted, a failed check fails the step."""
    with run.postgres() as conn:
        report = run.engines.health_report(conn, sections=options.get('sections', ['orphans']),
                                           thresholds=options.get('thresholds'),
                                           orphan_checks=options.get('orphan_checks'))
    orphans = report.get('orphans') or []
    errors = ['%s: %s' % (item.get('name'), item['error']) for item in orphans if item.get('error')]
    if errors:
        raise RuntimeError('orphan check failed: %s' % '; '.join(errors))
    found = sum(int(item.get('count') or 0) for item in orphans)
    summary = ', '.join('%s=%s' % (item.get('name'), item.get('count')) for item in orphans) or 'no checks'
    return summary, {'orphans_found': found}


def step_backup_verify(run, options):
    """Runbook 3.2 step 5 with the module's engine; writes the module's cerniq_backup_* metrics too."""
    if not options.get('path') and not options.get('list_command'):
        # The role refuses to install this; a hand-edited configuration must not pass for verified.
        raise RuntimeError('no backup location configured (path or list_command): backups NOT verified')
    options.pop('path' if options.get('list_command') else 'list_command', None)
    max_age_hours = options.pop('max_age_hours', None)
    if max_age_hours is not None:
        options['max_age_seconds'] = float(max_age_hours) * 3600
    restore = bool(options.pop('restore', False)) and not run.dry_run
    engines = run.engines
    result = engines.verify_backup(restore=restore, params=run.pg, **options)
    if run.textfile_dir and not run.dry_run:
        path = os.path.join(run.textfile_dir, BACKUP_METRICS_FILE)
        previous = engines.metrics.read_sample(path, 'cerniq_backup_last_success_timestamp_seconds')
        engines.metrics.write_metrics(path, engines.backup_metrics(result, task='backup', previous_success=previous))
    if not result['verified']:
        raise RuntimeError('backup verification failed: %s' % '; '.join(result['problems']))
    return 'backup %s verified (%s, %d s old%s)' % (
        result['backup'], result['format'], result['age_seconds'],
        ', restored into a scratch database' if result['restored'] else ''), {}


def step_pg_dump(run, options):
    """The nightly dump (custom format) into a directory, keeping the newest ``keep``."""
    keep = options.get('keep', 7)
    if run.dry_run:
        return 'would dump %s into %s (keeping %s)' % (run.pg.get('login_db'), options['directory'], keep), {}
    result = run.engines.dump_database(run.pg, options['directory'], options['prefix'], keep=keep)
    return 'dumped %s (%d bytes), %d old dumps removed' % (
        result['path'], result['size_bytes'], len(result['pruned'])), {}


# A job configuration's step types (roles/maintenance/templates/job.json.j2).
STEPS = {
    'maintenance': step_maintenance,
    'analyze_database': step_analyze_database,
    'auto_maintenance': step_auto_maintenance,
    'archive': step_archive,
    'redis_keys': step_redis_keys,
    'health': step_orphan_checks,
    'backup_verify': step_backup_verify,
    'pg_dump': step_pg_dump,
}


def run_step(step, run):
    """Run one configured step; returns (summary, counters)."""
    try:
        action = STEPS[step['type']]
    except KeyError:
        raise ValueError('unknown step type %r (known: %s)' % (step['type'], ', '.join(sorted(STEPS))))
    return action(run, dict(step.get('options') or {}))


def database_tables(engines, conn, schemas=None):
    """Every table of the database outside the system schemas (or of ``schemas``), as quoted names.

    Runbook 3.2 step 3 is a bare ``ANALYZE;``. pg_maintenance works on named tables, so the
    names come from the health engine's table list (catalog only, no pgstattuple).
    """
    report = engines.health_report(conn, sections=['table_bloat'], schemas=schemas or None, exact_bloat='never')
    return [engines.quote_ident((row['schema'], row['table'])) for row in report['table_bloat']
            if not row['schema'].startswith('pg_')]  # other sessions' pg_temp_N tables


class Engines(object):
    """The collection's engines, imported from the copy installed beside this script."""

    def __init__(self, lib):
        if lib not in sys.path:
            sys.path.insert(0, lib)
        base = 'ansible_collections.cerniq.ops.plugins.module_utils.'
        import importlib
        pg_connection = importlib.import_module(base + 'pg_connection')
        self.connect_postgres = pg_connection.connect_postgres
        self.quote_ident = importlib.import_module(base + 'pg_sql').quote_ident
        pg_maintenance = importlib.import_module(base + 'pg_maintenance')
        self.run_maintenance = pg_maintenance.run_maintenance
        self.auto_actions = pg_maintenance.AUTO_ACTIONS
        self.run_archive = importlib.import_module(base + 'pg_archive').run_archive
        pg_health = importlib.import_module(base + 'pg_health')
        self.health_report = pg_health.health_report
        self.maintenance_tasks = pg_health.maintenance_tasks
        pg_backup = importlib.import_module(base + 'pg_backup')
        self.verify_backup = pg_backup.verify_backup
        self.backup_metrics = pg_backup.backup_metrics
        self.dump_database = pg_backup.dump_database
        self.connect_redis = importlib.import_module(base + 'redis_connection').connect_redis
        self.delete_keys = importlib.import_module(base + 'redis_keys').delete_keys
        self.metrics = importlib.import_module(base + 'textfile_metrics')
        self.silences = importlib.import_module(base + 'alertmanager_silence')
        self.parse_duration = importlib.import_module(base + 'durations').parse_duration


class Window(object):
    """The run's maintenance window: an Alertmanager silence opened at the start, expired at the end."""

    def __init__(self, engines, config, timeout, log):
        self.settings = config.get('silence') or {}
        self.engines = engines
        self.timeout = timeout
        self.log = log
        self.opened = False

    def _ensure(self, state, **extra):
        silences = self.engines.silences
        cluster = silences.Cluster(self.settings['urls'], urllib_request)
        return silences.ensure(cluster, self.settings['matchers'], self.settings.get('created_by') or 'cerniq.ops',
                               self.settings['comment'], state=state, cluster_timeout=30, **extra)

    def _describe(self, result):
        silence = result['silence']
        return '%s %s: %s (%s)' % (silence.get('id'), result['action'], ', '.join(silence.get('matchers') or []),
                                   silence.get('comment'))

    def open(self, dry_run):
        if not self.settings.get('urls'):
            return
        try:
            seconds = self.timeout + self.engines.parse_duration(self.settings.get('margin') or '10m', 'margin')
            if dry_run:
                silences = self.engines.silences
                self.log('maintenance window: would silence %s for %d s (%s)' % (', '.join(
                    silences.matcher_text(silences.parse_matcher(m)) for m in self.settings['matchers']),
                    seconds, self.settings['comment']))
                return
            # A window a killed run left open is replaced (new start), not reused.
            result = self._ensure('present', duration_seconds=seconds, starts_at=self.engines.silences.utc_now())
        except (self.engines.silences.SilenceError, ValueError) as error:
            self.log('maintenance window NOT opened, the alerts of this run may page: %s' % error)
            return
        self.opened = True
        self.log('maintenance window: silence %s until %s' % (self._describe(result), result['silence'].get('ends_at')))

    def close(self):
        if not self.opened:
            return
        try:
            result = self._ensure('expired')
        except (self.engines.silences.SilenceError, ValueError) as error:
            self.log('maintenance window NOT closed, its silence ends by itself at the timeout plus margin: %s' % error)
            return
        self.log('maintenance window closed: silence %s' % self._describe(result))


def urllib_request(method, url, payload=None, timeout=10):
    """The engines' HTTP callable on the standard library: (status, text); OSError when unreachable."""
    import urllib.error
    import urllib.request
    data = json.dumps(payload).encode('utf-8') if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode('utf-8', 'replace')
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode('utf-8', 'replace')


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # runs the finally blocks: the window is closed


def write_metrics(engines, config, status, started, counters, step_status):
    textfile_dir = config.get('textfile_dir')
    if not textfile_dir:
        return
    job = config['job']
    path = os.path.join(textfile_dir, 'cerniq_maintenance_%s.prom' % job)
    previous = engines.metrics.read_sample(path, 'cerniq_maintenance_last_success_timestamp_seconds')
    now = time.time()
    labels = {'task': job}
    metrics = [
        ('cerniq_maintenance_last_run_timestamp_seconds', 'When the maintenance job last ran.', 'gauge', labels, now),
        ('cerniq_maintenance_duration_seconds', 'Duration of the last run.', 'gauge', labels,
         round(time.monotonic() - started, 3)),
        ('cerniq_maintenance_exit_status', 'Exit status of the last run (0 = success).', 'gauge', labels, status),
    ]
    last_success = now if status == 0 else previous
    if last_success is not None:
        metrics.append(('cerniq_maintenance_last_success_timestamp_seconds',
                        'When the maintenance job last succeeded.', 'gauge', labels, last_success))
    for name in ('rows_archived', 'rows_purged', 'keys_deleted', 'orphans_found'):
        metrics.append(('cerniq_maintenance_%s' % name, 'Last run: %s.' % name.replace('_', ' '), 'gauge', labels,
                        counters.get(name, 0)))
    for step, ok in step_status:
        metrics.append(('cerniq_maintenance_step_success', 'Whether each step of the last run succeeded.', 'gauge',
                        dict(task=job, step=step), 1 if ok else 0))
    engines.metrics.write_metrics(path, metrics)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--config', required=True)
    parser.add_argument('--dry-run', action='store_true', help='report what each step would do, change nothing')
    parser.add_argument('--lib', default=DEFAULT_LIB)
    args = parser.parse_args(argv)
    with open(args.config) as handle:
        config = json.load(handle)
    job = config['job']
    log = Log(config.get('log_file'), job)
    try:
        credentials = read_credentials(config.get('credentials_file'))
    except CredentialsError as error:
        log('ERROR: %s; nothing done' % error)
        return 2

    lock_path = config.get('lock_file') or '/var/lib/cerniq-maintenance/%s.lock' % job
    # Read-only is enough for flock, so a lock file created by another user (root running
    # `flock` by hand, an earlier run) never stops the job from checking the lock.
    lock_fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log('another %s run holds the lock %s; exiting without doing anything' % (job, lock_path))
        return 0

    started = time.monotonic()
    timeout = int(config.get('timeout') or 3600)
    deadline = started + timeout
    watchdog = Watchdog(timeout)
    watchdog.start()

    engines = Engines(args.lib)
    pg, redis_params = connection_params(config, credentials)
    mode = ' (dry run)' if args.dry_run else ''
    log('start%s: %d steps, timeout %d s' % (mode, len(config.get('steps', [])), timeout))
    window = Window(engines, config, timeout, log)
    signal.signal(signal.SIGTERM, _terminate)
    window.open(args.dry_run)
    try:
        run = Run(pg, redis_params, deadline, args.dry_run, engines, watchdog, config.get('textfile_dir'))
        status, counters, step_status = run_steps(config, run, log)
    finally:
        window.close()
    watchdog.stop()
    if watchdog.timed_out:
        status = 124
    if not args.dry_run:
        write_metrics(engines, config, status, started, counters, step_status)
    log('end: %s in %.1f s' % ('success' if status == 0 else 'FAILED (exit %d)' % status, time.monotonic() - started))
    return status


def run_steps(config, run, log):
    """Every enabled step in order, each failure logged; returns (status, counters, step status)."""
    timeout = int(config.get('timeout') or 3600)
    counters = {}
    step_status = []
    status = 0
    for step in config.get('steps', []):
        name = step.get('name') or step['type']
        if not step.get('enabled', True):
            log('step %s: disabled' % name)
            continue
        if run.watchdog.timed_out:
            log('step %s: not started: run timeout of %d s reached' % (name, timeout))
            step_status.append((name, False))
            continue
        step_started = time.monotonic()
        try:
            summary, step_counters = run_step(step, run)
        except Exception as error:  # pylint: disable=broad-except
            message = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
            if run.watchdog.timed_out:
                message = 'run timeout of %d s reached (%s)' % (timeout, message)
            log('step %s: FAILED: %s' % (name, message))
            if config.get('debug'):
                log(traceback.format_exc())
            step_status.append((name, False))
            status = 1
            continue
        for key, value in step_counters.items():
            counters[key] = counters.get(key, 0) + value
        step_status.append((name, True))
        log('step %s: ok in %.1f s: %s' % (name, time.monotonic() - step_started, summary))
    return status, counters, step_status


if __name__ == '__main__':
    sys.exit(main())
