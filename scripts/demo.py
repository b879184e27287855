"""make demo: the collection finding and fixing a broken CERNIQ pipeline on lab hosts.

    scripts/demo.py            the lab demo (below)
    scripts/demo.py incidents  the demo's first five stages only: the lab broken the way runbook
                               section 2 describes and diagnosed, left so for working the
                               procedures by hand (the commands are printed)
    scripts/demo.py local      the same procedures against local throwaway servers, no containers
                               (scripts/demo_local.py, about 90 s)
    scripts/demo.py down       remove what the demo created: lab containers, network, state dir

The lab demo brings up the podman lab of ``inventory/lab`` (scripts/lab.sh: database,
redis, monitor and worker hosts on a private network, configured by playbooks/site.yml,
with real BullMQ workers from extensions/lab), loads the CERNIQ synthetic data, breaks
the pipeline the way runbook section 2 describes, waits until the shipped alert rules
fire, runs the diagnosis, the four runbook procedures and the daily maintenance, waits
until the alerts clear, writes the incident and capacity reports and ends with a summary:
what was found, what was done, which alerts fired and which cleared, and where
Prometheus and Alertmanager can be opened. The summary is also written to
``<state dir>/summary.json`` (read by tests/lab).

The CERNIQ HTTP API (escalations, scoring) cannot run here: a stand-in on the worker
host (extensions/lab/worker/cerniq_lab_api.py) records the calls and the summary lists them.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

from demo_common import BOLD, REPO, RESET, StageFailed, Stages, collections_root, every_line, markdown_table
from demo_common import RETENTION_SQL, playbook_command, playbook_env, run_demo

STATE_DIR = os.environ.get('CERNIQ_DEMO_DIR', os.path.join(tempfile.gettempdir(), 'cerniq-demo'))
INVENTORY = os.path.join(REPO, 'inventory', 'lab')
DB, REDIS, WORKER, MONITOR = 'cerniq-lab-db', 'cerniq-lab-redis', 'cerniq-lab-worker', 'cerniq-lab-monitor'
PODMAN_ENV = dict(os.environ, CONTAINERS_CONF=os.environ.get(
    'CONTAINERS_CONF', os.path.join(REPO, 'extensions', 'molecule', 'containers.conf')))
# The lab inventory's connection with pipelining, as scripts/lab.sh uses it (inventory/lab/hosts.yml).
LAB_CONNECTION_ENV = {
    'CERNIQ_LAB_CONNECTION': os.environ.get('CERNIQ_LAB_CONNECTION', 'podman_pipelined'),
    'ANSIBLE_CONNECTION_PLUGINS': os.environ.get('ANSIBLE_CONNECTION_PLUGINS',
                                                 os.path.join(REPO, 'extensions', 'plugins', 'connection')),
}
WORKER_PY = '/opt/cerniq-lab-worker/venv/bin/python'
WORKER_PROGRAM = '/opt/cerniq-lab-worker/cerniq_lab_worker.py'
WORKER_ENV = '/etc/cerniq-lab/workers.env'
API_RECORD = '/var/lib/cerniq-lab-api/requests.jsonl'
# The procedures' target: the lab's database host (the demo runs them there; `incidents` writes it
# to a vars file for running them by hand).
LAB_TARGETS = {name: DB for name in ('cerniq_runbook_hosts', 'cerniq_queue_hosts', 'cerniq_db_hosts',
                                     'cerniq_report_hosts')}
INGEST_QUEUE = 'bronze:ingest:csv'
IMPORT_JOBS = 6000
API_TOKEN = 'demo-token-not-a-secret'
FIRE_TIMEOUT = int(os.environ.get('CERNIQ_DEMO_FIRE_TIMEOUT', 660))
# CERNIQ_DEMO_WAIT_ALERTS=0: run every stage but do not wait for alerts to fire or clear (the
# lab test's quick rerun, which checks lab reuse and the reset; the first run checks the alerts).
WAIT_ALERTS = os.environ.get('CERNIQ_DEMO_WAIT_ALERTS', '1') != '0'
CLEAR_TIMEOUT = int(os.environ.get('CERNIQ_DEMO_CLEAR_TIMEOUT', 600))

# The alerts the injected incidents must raise: (alertname, labels that identify it, what raised it).
EXPECTED_ALERTS = [
    ('ImportStuck', {}, '2.1 import stuck in processing'),
    ('WorkerDown', {'instance': WORKER + ':9464'}, '2.1 ingest worker stuck (SIGSTOP)'),
    ('BullMQQueueDepth', {'queue': INGEST_QUEUE, 'severity': 'sev2'}, '2.1 %d-row import waiting' % IMPORT_JOBS),
    ('EnrichmentErrorRate', {'source': 'anaf'}, '2.2 ANAF circuit breaker OPEN'),
    ('HITLTasksOverdue', {}, '2.3 overdue approval tasks'),
    ('BackupUnreadable', {}, '3.2 step 5 newest backup truncated'),
]
BACKUP_DIR = '/var/backups/cerniq'
BACKUP_METRICS = '/var/lib/prometheus/node-exporter/cerniq_backup.prom'
# Alerts whose windows outlast the fix, and why they are still firing at the end.
LAGGING = {
    'HighJobFailureRate': 'its 10-minute rate window still holds the ANAF attempts that failed while the breaker '
                          'was OPEN; it clears by itself about 10 minutes after the reset.',
    'QueueStalled': 'its 30-minute window; it clears once the queue has finished jobs again for long enough.',
}


def lab_secrets():
    with open(os.path.join(INVENTORY, 'group_vars', 'all', 'secrets.yml')) as handle:
        return yaml.safe_load(handle)


def podman(*args, check=True, env=None):
    proc = subprocess.run(['podman'] + list(args), env=dict(PODMAN_ENV, **(env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    if check and proc.returncode != 0:
        raise StageFailed('podman %s failed: %s' % (' '.join(args[:3]), proc.stderr.strip()[-500:]))
    return proc.stdout.strip()


def alert_key(alert):
    labels = alert['labels']
    extra = ','.join('%s=%s' % (k, labels[k]) for k in ('queue', 'source', 'instance', 'approval_type', 'priority')
                     if k in labels and not (k == 'instance' and labels.get('job') != 'cerniq-workers'))
    return '%s %s%s' % (labels.get('alertname'), labels.get('severity', ''), ' {%s}' % extra if extra else '')


def matches(alert, name, labels):
    return alert['labels'].get('alertname') == name and all(alert['labels'].get(k) == v for k, v in labels.items())


class LabDemo:
    STAGES = 13

    def __init__(self):
        self.stages = Stages(STATE_DIR, self.STAGES)
        self.secrets = lab_secrets()
        self.urls = {}
        self.receivers = {}
        self.seen = {}

    # ------------------------------------------------------------------ access to the lab
    def sql(self, query):
        out = podman('exec', DB, 'runuser', '-u', 'postgres', '--', 'psql', '-X', '-q', '-d', 'cerniq_db', '-tA',
                     '-v', 'ON_ERROR_STOP=1', '-c', query)
        return out.splitlines()[-1] if out else ''

    def redis(self, *args):
        # `-e NAME` without a value: podman passes its own environment's value, so the password
        # never appears in a command line (ps).
        return podman('exec', '-e', 'REDISCLI_AUTH', REDIS, 'redis-cli', '--no-auth-warning', *args,
                      env={'REDISCLI_AUTH': self.secrets['vault_cerniq_redis_password']})

    @staticmethod
    def running(container):
        return podman('container', 'inspect', '-f', '{{.State.Running}}', container, check=False) == 'true'

    def worker_exec(self, *args):
        return podman('exec', WORKER, *args)

    def systemctl(self, *args):
        return self.worker_exec('systemctl', *args)

    def prometheus(self, path):
        with urllib.request.urlopen(self.urls['prometheus'] + path, timeout=10) as response:
            return json.load(response)

    def alertmanager(self, path):
        with urllib.request.urlopen(self.urls['alertmanager'] + path, timeout=10) as response:
            return json.load(response)

    def playbook(self, name, path, extra=None, show=every_line):
        return self.stages.command(name, playbook_command(INVENTORY, path, extra),
                                   env=playbook_env(CERNIQ_API_TOKEN=API_TOKEN, **LAB_CONNECTION_ENV), show=show,
                                   what=path)

    def procedure(self, name, path, extra=None):
        """A runbook procedure on the database host, acting unattended (as an AWX job would)."""
        extra = dict(dict(LAB_TARGETS, cerniq_confirm=True), **(extra or {}))
        return self.playbook(name, path, extra, show=AnsibleProgress())

    # ------------------------------------------------------------------ the run
    def run(self):
        started = time.monotonic()
        before = self.break_and_diagnose()
        self.stage('Waiting for the shipped alert rules to fire (their for: durations are not shortened)')
        fired = self.wait_alerts(firing=True) if WAIT_ALERTS else self.not_waiting()
        self.fixes_started = datetime.datetime.now(datetime.timezone.utc)   # the incident report's "Fix deployed"
        self.stage('Runbook 2.1 - import stuck: cancel it, requeue the stalled jobs, restart the stuck ingest worker')
        self.procedure('stuck-import', 'playbooks/runbook/stuck_import.yml')
        self.stage('Runbook 2.2 - rate limiting: reset the OPEN breaker, ANAF_CONCURRENCY=1, restart enrichment')
        self.procedure('rate-limiting', 'playbooks/runbook/rate_limiting.yml')
        self.stage('Runbook 2.3 - HITL SLA breach: release, escalate through the API, auto-approve by policy')
        self.procedure('sla-breach', 'playbooks/runbook/sla_breach.yml', {'cerniq_auto_approve': True})
        self.stage('Runbook 2.4 - quality scores: reset sub-scores, trigger scoring, restart the scoring workers')
        self.procedure('quality', 'playbooks/runbook/quality_anomalies.yml')
        self.stage('Daily maintenance (runbook 3.1): vacuum, purge, archive, Redis cache cleanup; '
                   'a new backup, verified (3.2 step 5)')
        self.procedure('daily', 'playbooks/daily_maintenance.yml', {'cerniq_redis_cleanup_enabled': True})
        self.fix_backup()
        self.stage('Waiting for the alerts to clear')
        still_overdue = int(self.sql("SELECT count(*) FROM approval_tasks WHERE status = 'pending' "
                                     "AND due_at < now()"))
        cleared = self.wait_alerts(firing=False, keep={'HITLTasksOverdue'} if still_overdue else set()) \
            if WAIT_ALERTS else self.not_waiting()
        self.stage('Reports: incident (runbook 5.2) and capacity (runbook 6)')
        reports = self.stage_reports()
        after = self.snapshot()
        self.summary(before, after, fired, cleared, still_overdue, reports, time.monotonic() - started)

    def break_and_diagnose(self):
        """Stages 1-5: the lab up, its data reset and seeded, the pipeline broken, the diagnosis.
        Returns what the incidents put in (the summary's "found")."""
        self.stage_lab()
        self.stage_reset()
        self.stage_seed()
        found = self.stage_break()
        self.stage('Diagnosis (runbook 2.1, 2.2): queues, stalled jobs, circuit breakers, rate limits')
        self.procedure('diagnose', 'playbooks/diagnose_queues.yml', {'cerniq_confirm': False})
        return found

    def stage(self, title):
        self.stages.stage(title)

    def stage_lab(self):
        self.stage('Lab: image, network, four systemd containers, playbooks/site.yml, the lab workers')
        print('    (first time about 6-12 minutes, mostly apt-get inside the containers; later runs reuse them)')
        if self.running(WORKER):
            # An interrupted run may have left the ingest worker frozen (stage 4): thaw it first.
            podman('exec', WORKER, 'systemctl', 'kill', '--signal=SIGCONT', 'cerniq-workers-ingest', check=False)
        self.stages.command('lab-up', [os.path.join(REPO, 'scripts', 'lab.sh'), 'up'], show=lab_progress,
                            what='scripts/lab.sh up')
        for name, port in (('prometheus', 9090), ('alertmanager', 9093)):
            self.urls[name] = 'http://' + podman('port', MONITOR, '%d/tcp' % port).splitlines()[0]
        print('    Prometheus %(prometheus)s, Alertmanager %(alertmanager)s' % self.urls)

    def stage_reset(self):
        self.stage('Resetting the lab data (every run starts from the same state)')
        self.systemctl('kill', '--signal=SIGCONT', 'cerniq-workers-ingest')  # an interrupted run froze it
        tables = self.sql("SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
                          "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        if tables:
            self.sql('TRUNCATE %s RESTART IDENTITY CASCADE' % tables)
        self.redis('FLUSHDB')
        self.worker_exec('sh', '-c', '[ ! -e {0} ] || : > {0}'.format(API_RECORD))  # keeps the service's owner
        self.systemctl('restart', 'cerniq-workers-ingest', 'cerniq-workers-enrichment', 'cerniq-workers-scoring')
        self.fix_backup()  # an earlier run broke one
        print('    CERNIQ tables truncated, Redis flushed, workers restarted with the lab settings')
        # Alerts of an earlier run must be over before this run's incidents, or "fired" means nothing:
        # the expected ones and the lagging ones (an earlier run leaves HighJobFailureRate firing).
        if WAIT_ALERTS:
            print('    waiting until none of the alerts this demo raises is pending or firing:')
            self.wait_quiet(timeout=CLEAR_TIMEOUT)

    def stage_seed(self):
        self.stage('Loading the CERNIQ synthetic data (seed 42) into the lab database')
        self.playbook('seed', 'playbooks/lab_seed.yml', {'cerniq_db_hosts': DB, 'cerniq_lab_incidents': []},
                      show=AnsibleProgress())

    def stage_break(self):
        self.stage('Breaking the pipeline the way runbook section 2 describes')
        self.incident_start = datetime.datetime.now(datetime.timezone.utc)
        self.receivers = {}  # only what this run's incidents raise
        # 2.1: a large CSV import arrives and the ingest worker wedges while it holds jobs.
        self.worker_exec('sh', '-c', 'set -a; . %s; exec %s %s produce --queue %s --count %d'
                         % (WORKER_ENV, WORKER_PY, WORKER_PROGRAM, INGEST_QUEUE, IMPORT_JOBS))
        deadline = time.monotonic() + 30
        while int(self.redis('LLEN', 'bull:%s:active' % INGEST_QUEUE) or 0) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.systemctl('kill', '--signal=SIGSTOP', 'cerniq-workers-ingest')
        print('    %d-row CSV import queued; the ingest worker froze (SIGSTOP) holding %s jobs: its locks expire in 30 s'
              % (IMPORT_JOBS, self.redis('LLEN', 'bull:%s:active' % INGEST_QUEUE)))
        # 2.1 stuck batch, 2.2 breaker OPEN, 2.3 overdue tasks, 2.4 missing scores (cerniq_synthetic_data).
        self.playbook('incidents', 'playbooks/lab_seed.yml', {'cerniq_db_hosts': DB}, show=AnsibleProgress())
        for start in range(0, 2000, 500):
            args = []
            for i in range(start, start + 500):
                args += ['cache:company:%d' % i, 'x']
            self.redis('MSET', *args)
        self.redis('SET', 'session:expired:demo', 'x')
        self.break_backup()
        time.sleep(31)  # the frozen worker's locks expire: its jobs are stalled now
        facts = self.snapshot()
        for key, value in facts.items():
            print('    %-44s %s' % (key, value))
        return facts

    def db_exec(self, *args, check=True):
        return podman('exec', DB, *args, check=check)

    def break_backup(self):
        """3.2 step 5: the newest nightly dump is truncated; the weekly verification finds it unreadable."""
        newest = self.db_exec('sh', '-c', 'ls -t %s/cerniq_db-*.dump | head -n1' % BACKUP_DIR)
        self.db_exec('truncate', '-s', '200', newest)
        self.db_exec('systemctl', 'start', 'cerniq-maintenance@weekly.service', check=False)  # fails, as it should
        print('    the newest backup %s truncated to 200 bytes; the weekly verification: %s'
              % (newest, self.backup_state()))

    def fix_backup(self):
        """A new dump (the nightly job, run now) and the weekly job verifying it."""
        self.db_exec('systemctl', 'start', 'cerniq-maintenance@backup.service')
        self.db_exec('systemctl', 'start', 'cerniq-maintenance@weekly.service')
        print('    a new backup dumped and verified by the weekly job: %s' % self.backup_state())

    def backup_state(self):
        """What the last weekly verification wrote for Prometheus (cerniq_backup_verify_check)."""
        text = self.db_exec('sh', '-c', 'cat %s 2>/dev/null || true' % BACKUP_METRICS)
        checks = dict(re.findall(r'^cerniq_backup_verify_check\{[^}]*check="(\w+)"[^}]*\} (\S+)$', text, re.M))
        if not checks:
            return 'not verified yet'
        failed = sorted(name for name, value in checks.items() if float(value) != 1)
        return 'verified (%s)' % ', '.join(sorted(checks)) if not failed else 'FAILED: ' + ', '.join(failed)

    def snapshot(self):
        # The engine's atomic window read (id, locked, started per job): read id by id, a job that
        # completes between LRANGE and its EXISTS would look stalled on a busy queue.
        sys.path.insert(0, collections_root())
        from ansible_collections.cerniq.ops.plugins.module_utils.bullmq_lua import SCAN_ACTIVE_WINDOW
        window = self.redis('EVAL', SCAN_ACTIVE_WINDOW, '1', 'bull:%s:active' % INGEST_QUEUE,
                            'bull:%s:' % INGEST_QUEUE, '0', '-1').split('\n')
        stalled = window[1::3].count('0')
        return {
            'imports stuck in processing': int(self.sql(
                "SELECT count(*) FROM bronze_import_batches WHERE status = 'processing' "
                "AND started_at < now() - interval '30 minutes'")),
            'stalled ingest jobs (active, no lock)': stalled,
            'ingest jobs waiting': int(self.redis('LLEN', 'bull:%s:wait' % INGEST_QUEUE) or 0),
            'ingest worker (cerniq-workers-ingest)': self.ingest_worker_state(),
            'ANAF circuit breaker': self.redis('GET', 'circuit:anaf:state') or 'closed (no key)',
            'ANAF delayed jobs': int(self.redis('ZCARD', 'bull:silver:enrich:anaf-fiscal-status:delayed') or 0),
            'ANAF_CONCURRENCY in the workers\' env file': self.worker_exec(
                'sh', '-c', "grep '^ANAF_CONCURRENCY=' %s | cut -d= -f2" % WORKER_ENV),
            'approval tasks overdue, not escalated': int(self.sql(
                "SELECT count(*) FROM approval_tasks WHERE status IN ('pending', 'assigned') AND due_at < now() "
                "AND escalation_level = 0")),
            'overdue tasks auto-approved by policy': int(self.sql(
                "SELECT count(*) FROM approval_tasks WHERE decided_by LIKE 'cerniq.ops%'")),
            'unscored companies, scoring not requested': int(self.sql(
                'SELECT count(*) FROM silver_companies WHERE total_quality_score IS NULL AND is_master_record '
                'AND scoring_requested_at IS NULL')),
            'rows past retention (bronze 30 d, log 90 d)': int(self.sql(RETENTION_SQL)),
            'Redis cache keys': len(self.redis('--scan', '--pattern', 'cache:*').split()),
            'newest backup (weekly verification)': self.backup_state(),
        }

    def ingest_worker_state(self):
        pid = self.systemctl('show', '-p', 'MainPID', '--value', 'cerniq-workers-ingest')
        if pid in ('', '0'):
            return 'not running'
        stat = podman('exec', WORKER, 'ps', '-o', 'stat=', '-p', pid, check=False)
        return 'frozen (stopped by SIGSTOP)' if stat.startswith('T') else 'running'

    # ------------------------------------------------------------------ alerts
    def active_alerts(self):
        alerts = self.prometheus('/api/v1/alerts')['data']['alerts']
        try:
            for alert in self.alertmanager('/api/v2/alerts'):
                key = alert_key(alert)
                self.receivers[key] = sorted(r['name'] for r in alert.get('receivers', []))
        except OSError:
            pass
        for alert in alerts:
            self.seen.setdefault(alert_key(alert), alert['labels'])
        return alerts

    @staticmethod
    def not_waiting():
        print('    not waiting (CERNIQ_DEMO_WAIT_ALERTS=0)')
        return {}

    def wait_quiet(self, timeout):
        """Poll until no alert of the families this demo raises (expected or lagging) is pending or firing."""
        names = {name for name, _labels, _why in EXPECTED_ALERTS} | set(LAGGING)
        started = time.monotonic()
        last_line = None
        while True:
            active = sorted('%s %s' % (alert_key(a), a['state']) for a in self.active_alerts()
                            if a['labels'].get('alertname') in names)
            elapsed = time.monotonic() - started
            line = ', '.join(active) or 'none pending or firing'
            if line != last_line or not active or int(elapsed) % 60 < 15:
                print('    %3dm%02ds  %s' % (elapsed // 60, elapsed % 60, line), flush=True)
                last_line = line
            if not active:
                return
            if elapsed > timeout:
                print('    gave up after %d s: the summary reports these apart, as already firing before the incidents'
                      % timeout)
                return
            time.sleep(15)

    def wait_alerts(self, firing, keep=frozenset(), timeout=None):
        """Poll until every expected alert fires (firing=True) or has cleared (firing=False)."""
        timeout = timeout or (FIRE_TIMEOUT if firing else CLEAR_TIMEOUT)
        started = time.monotonic()
        last_line = None
        while True:
            alerts = self.active_alerts()
            state = {}
            for name, labels, _why in EXPECTED_ALERTS:
                found = [a for a in alerts if matches(a, name, labels)]
                state[name] = 'firing' if any(a['state'] == 'firing' for a in found) else (
                    'pending' if found else 'inactive')
            if firing:
                done = all(s == 'firing' for s in state.values())
            else:
                done = all(s == 'inactive' for n, s in state.items() if n not in keep)
            elapsed = time.monotonic() - started
            line = ', '.join('%s %s' % (n, s) for n, s in state.items())
            if line != last_line or done or int(elapsed) % 60 < 15:
                print('    %3dm%02ds  %s' % (elapsed // 60, elapsed % 60, line), flush=True)
                last_line = line
            if done or elapsed > timeout:
                if not done:
                    print('    gave up after %d s: %s' % (timeout, line))
                return state
            time.sleep(15)

    # ------------------------------------------------------------------ reports and summary
    def stage_reports(self):
        report_dir = os.path.join(STATE_DIR, 'reports')
        start = self.incident_start.replace(microsecond=0).isoformat()
        self.procedure('incident-report', 'playbooks/incident_report.yml', {
            'cerniq_report_dir': report_dir, 'cerniq_incident_id': 'INC-DEMO', 'cerniq_incident_start': start,
            'cerniq_incident_mitigated_at': self.fixes_started.replace(microsecond=0).isoformat(),
            'cerniq_incident_mitigated_by': 'cerniq.ops runbook procedures (demo)'})
        self.procedure('capacity-report', 'playbooks/capacity_report.yml', {'cerniq_report_dir': report_dir})
        return {'incident': os.path.join(report_dir, 'INC-DEMO.md'),
                'capacity': os.path.join(report_dir, 'capacity.md'),
                'capacity_html': os.path.join(report_dir, 'capacity.html')}

    def alert_periods(self):
        sys.path.insert(0, collections_root())
        from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.incident import alert_history

        def fetch(url):
            with urllib.request.urlopen(url, timeout=20) as response:
                return json.load(response)
        now = datetime.datetime.now(datetime.timezone.utc)
        periods = alert_history(self.urls['prometheus'], self.incident_start, now, fetch, step_seconds=15)
        # The range query cannot tell "resolved in the last two steps" from "still firing": ask the rule manager.
        firing = {frozenset(a['labels'].items()) for a in self.prometheus('/api/v1/alerts')['data']['alerts']
                  if a['state'] == 'firing'}
        for period in periods:
            if period['end'] is None and frozenset(period['labels'].items()) not in firing:
                period['end'] = now.isoformat()
        # The range starts at the injection: a period that begins on its first sample was already firing then.
        before = [p for p in periods if datetime.datetime.fromisoformat(p['start']) - self.incident_start
                  < datetime.timedelta(seconds=1)]
        return [p for p in periods if p not in before], before

    def maintenance_windows(self):
        """The silences the procedures opened (and expired) around the restarts and the maintenance."""
        sys.path.insert(0, collections_root())
        from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.incident import window_silences
        now = datetime.datetime.now(datetime.timezone.utc)
        # An empty base URL: the engine asks for '/api/v2/silences', self.alertmanager() adds the lab's.
        return [s for s in window_silences('', self.alertmanager, self.incident_start, now)
                if s['created_by'] == 'cerniq.ops']

    def summary(self, before, after, fired, cleared, still_overdue, reports, elapsed):
        periods, carried_over = self.alert_periods()
        print('\n%s== Demo summary ==%s  (%.0f s; logs and reports in %s)\n' % (BOLD, RESET, elapsed, STATE_DIR))
        print(markdown_table(['what', 'found', 'after'], [(k, before[k], after[k]) for k in before]))
        rows = []
        for period in periods:
            key = alert_key(period)
            rows.append((key, period['start'][11:19], period['end'][11:19] if period['end'] else 'still firing',
                         ', '.join(self.receivers.get(key, [])) or '-'))
        print('\nAlerts in the lab since the incidents were injected (%s UTC):\n'
              % self.incident_start.strftime('%H:%M:%S'))
        print(markdown_table(['alert', 'fired (UTC)', 'cleared (UTC)', 'routed to'], rows) if rows
              else '    none fired')
        if carried_over:
            print('\nAlready firing when the incidents were injected (not raised by this run): %s'
                  % ', '.join(alert_key(p) for p in carried_over))
        missing = [name for name, state in fired.items() if state != 'firing']
        if missing:
            print('\nExpected but did not fire within %d s: %s' % (FIRE_TIMEOUT, ', '.join(missing)))
        if still_overdue:
            print('\nHITLTasksOverdue keeps firing while %d overdue approval tasks wait for a decision: the procedure '
                  'escalated them (or released them to the pool); it does not decide for the operators.'
                  % still_overdue)
        lagging = sorted({p['alertname'] for p in periods if p['end'] is None} & set(LAGGING))
        for name in lagging:
            print('\n%s is still firing: %s' % (name, LAGGING[name]))
        if any(p['alertname'] == 'HITLStalled' for p in periods):
            print('\nHITLStalled fires because nobody works the approval queue in the lab: no operator resolves tasks, '
                  'so the workers\' cerniq_hitl_tasks_resolved_total never moves while tasks are pending.')
        calls = {}
        recorded = self.worker_exec('sh', '-c', 'cat %s 2>/dev/null || true' % API_RECORD)
        for request in (json.loads(line) for line in recorded.splitlines() if line.strip()):
            kind = 'escalate' if request['path'].endswith('/escalate') else request['path']
            calls[kind] = calls.get(kind, 0) + 1
        received = ', '.join('%s x%d' % c for c in sorted(calls.items())) or 'no calls'
        print('\nCERNIQ API stand-in received: %s' % received)
        windows = self.maintenance_windows()
        print('\nMaintenance windows (Alertmanager silences the procedures opened, then expired):\n')
        print(markdown_table(['window', 'silenced', 'from (UTC)', 'to (UTC)', 'now'],
                             [(w['comment'], ', '.join(w['matchers']), w['starts_at'][11:19], w['ends_at'][11:19],
                               w['state']) for w in windows]) if windows else '    none')
        print('Reports: %s, %s (and %s)' % (reports['incident'], reports['capacity'], reports['capacity_html']))
        print('\nOpen the lab:\n    Prometheus    %s/alerts\n    Alertmanager  %s\n'
              'Remove it with `make demo-down` (scripts/demo.py down).'
              % (self.urls['prometheus'], self.urls['alertmanager']))
        with open(os.path.join(STATE_DIR, 'summary.json'), 'w') as handle:
            json.dump(dict(mode='lab', found=before, after=after, expected_fired=fired, expected_cleared=cleared,
                           still_overdue=still_overdue, alerts=periods, carried_over=carried_over,
                           receivers=self.receivers, api_calls=calls, silences=windows,
                           reports=reports, urls=self.urls, incident_start=self.incident_start.isoformat(),
                           elapsed_s=round(elapsed)), handle, indent=2)


class IncidentsOnly(LabDemo):
    """`scripts/demo.py incidents`: the lab broken and diagnosed, left for the operator.

    The same first five stages as the demo (a later `make demo` thaws the frozen worker and resets
    everything); instead of running the procedures it prints how to run them by hand."""

    STAGES = 5
    PROCEDURES = ('playbooks/runbook/stuck_import.yml', 'playbooks/runbook/rate_limiting.yml',
                  'playbooks/runbook/sla_breach.yml', 'playbooks/runbook/quality_anomalies.yml',
                  'playbooks/daily_maintenance.yml')

    def run(self):
        started = time.monotonic()
        found = self.break_and_diagnose()
        # What the procedures need to run by hand from the checkout: the collection as cerniq.ops
        # (a link to the checkout, kept with the state) and the lab's database host as their target.
        tree = os.path.join(STATE_DIR, 'collections', 'ansible_collections', 'cerniq')
        os.makedirs(tree, exist_ok=True)
        if not os.path.lexists(os.path.join(tree, 'ops')):
            os.symlink(REPO, os.path.join(tree, 'ops'))
        hosts_file = os.path.join(STATE_DIR, 'lab-hosts.yml')
        with open(hosts_file, 'w') as handle:
            yaml.safe_dump(LAB_TARGETS, handle)
        print('\n%s== The lab is broken ==%s  (%.0f s; logs in %s)\n'
              % (BOLD, RESET, time.monotonic() - started, STATE_DIR))
        print(markdown_table(['what', 'found'], list(found.items())))
        print('\nWork the incidents with the runbook procedures; each reports only until you add '
              '-e cerniq_confirm=true:\n')
        print('    cd %s' % REPO)
        print('    export ANSIBLE_COLLECTIONS_PATH=%s CERNIQ_API_TOKEN=%s'
              % (os.path.join(STATE_DIR, 'collections'), API_TOKEN))
        for path in self.PROCEDURES:
            print('    .venv/bin/ansible-playbook -i inventory/lab -e @%s %s' % (hosts_file, path))
        print('\nPrometheus %(prometheus)s/alerts, Alertmanager %(alertmanager)s (the rules fire within about '
              '6 minutes).' % self.urls)
        print('`make demo` runs the procedures for you; `make demo-down` removes the lab.')
        with open(os.path.join(STATE_DIR, 'summary.json'), 'w') as handle:
            json.dump(dict(mode='incidents', found=found, urls=self.urls, procedures=list(self.PROCEDURES),
                           incident_start=self.incident_start.isoformat()), handle, indent=2)


def lab_progress(line):
    return line.startswith('[lab]') or line.startswith('PLAY [') or line.startswith('PLAY RECAP') or \
        ' : ok=' in line


class AnsibleProgress:
    """Which ansible-playbook lines a stage shows: plays, tasks, the procedures' messages when
    they are text or tables (a data structure stays in the log), failures and the recap."""

    STRUCTURE = re.compile(r'^-?\s*[A-Za-z_][\w ]*:(\s|$)')

    def __init__(self):
        self.block = None  # None, 'undecided', 'show' or 'hide'

    def __call__(self, line):
        stripped = line.strip()
        if line.startswith('TASK [') or line.startswith('PLAY ['):
            self.block = None
            return 'Validating arguments against arg spec' not in line
        if line.startswith(('fatal:', 'failed:')) or (stripped.startswith('msg:') and self.block is None):
            self.block = 'undecided' if stripped == 'msg:' else 'show'
            return stripped != 'msg:'
        if ' : ok=' in line:
            self.block = None
            return True
        if self.block and line.startswith('    '):
            if self.block == 'undecided':
                self.block = 'hide' if self.STRUCTURE.match(stripped) else 'show'
                sys.stdout.write('        msg: (data, in the log)\n' if self.block == 'hide' else '        msg:\n')
            return self.block == 'show'
        self.block = None
        return False


def down():
    """Remove the lab (containers, network); keep what the demo wrote for the user (reports, summary, logs)."""
    subprocess.run([os.path.join(REPO, 'scripts', 'lab.sh'), 'down'], check=False)
    kept = os.path.join(STATE_DIR, 'reports')
    if os.path.isdir(STATE_DIR):
        print('demo: kept the reports, summary and logs in %s (%s; `rm -r %s` removes them)'
              % (STATE_DIR, 'reports in %s' % kept if os.path.isdir(kept) else 'no reports', STATE_DIR))
    print('demo: kept the image localhost/cerniq-bookworm and .cache/lab-wheels (build caches shared with the '
          'Molecule tests; `podman rmi localhost/cerniq-bookworm` and `rm -r .cache` remove them)')


def main(argv):
    command = argv[1] if len(argv) > 1 else 'lab'
    if command == 'local':
        import demo_local
        return demo_local.main()
    if command == 'down':
        down()
        import demo_local
        demo_local.down()
        return 0
    if command not in ('lab', 'incidents'):
        print('usage: scripts/demo.py [lab|incidents|local|down]', file=sys.stderr)
        return 2
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    return run_demo(IncidentsOnly() if command == 'incidents' else LabDemo())


if __name__ == '__main__':
    sys.exit(main(sys.argv))
