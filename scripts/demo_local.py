"""The local demo (``scripts/demo.py local``): no containers, about 90 seconds.

Throwaway PostgreSQL and Redis on loopback ports, the
CERNIQ schema and synthetic data, every incident of runbook section 2 injected,
then the collection's playbooks diagnose, repair and maintain it, a real BullMQ
worker proves the requeued jobs run exactly once, and a summary shows what was
found and what was done. The CERNIQ HTTP API (escalations, scoring) cannot run
here; a small local stand-in records the calls and the summary lists them.
The summary is also written to ``<state dir>/summary.json`` (read by the tests).

``make demo`` runs the lab demo (scripts/demo.py), which does the same on podman hosts
with the monitoring stack and reports the alerts.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from demo_common import BOLD, RESET, RETENTION_SQL, Stages, every_line, playbook_command, playbook_env, run_demo

from cerniq_testkit.bullmq_helpers import PY_CURRENT, orphan_active_jobs, run, start_worker
from cerniq_testkit.http_recorder import HttpRecorder
from cerniq_testkit.servers import PostgresServer, RedisServer

STATE_DIR = os.environ.get('CERNIQ_DEMO_DIR', os.path.join(tempfile.gettempdir(), 'cerniq-demo-local'))
SEED = '42'
INGEST_QUEUE = 'bronze:ingest:csv'
API_TOKEN = 'demo-token-not-a-secret'


class Demo:
    def __init__(self):
        self.stages = Stages(STATE_DIR, 12)
        self.pg = self.redis = self.api = None
        self.inventory = None
        self.vars_file = None

    # ------------------------------------------------------------------ plumbing
    def stage(self, title):
        self.stages.stage(title)

    def playbook(self, name, path, extra=None, show=True):
        return self.stages.command(name, playbook_command(self.inventory, path, extra, self.vars_file),
                                   env=playbook_env(CERNIQ_API_TOKEN=API_TOKEN), show=every_line if show else None,
                                   what=path)

    def sql(self, query):
        import psycopg2
        params = self.pg.params()
        conn = psycopg2.connect(host=params['login_host'], port=params['login_port'], dbname=params['login_db'],
                                user=params['login_user'], password=params['login_password'])
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return cur.fetchone()[0]
        finally:
            conn.close()

    # ------------------------------------------------------------------ facts for the summary
    def snapshot(self):
        client = self.redis.client()
        prefix = 'bull:%s:' % INGEST_QUEUE
        stalled = 0
        for job_id in client.lrange(prefix + 'active', 0, -1):
            if not client.exists(prefix + job_id.decode() + ':lock'):
                stalled += 1
        facts = {
            'imports stuck in processing': self.sql(
                "SELECT count(*) FROM bronze_import_batches WHERE status = 'processing' "
                "AND started_at < now() - interval '30 minutes'"),
            'stalled ingest jobs (active, no lock)': stalled,
            'ingest jobs waiting': client.llen(prefix + 'wait'),
            'circuit breakers OPEN': sum(1 for source in ('anaf', 'termene')
                                         if (client.get('circuit:%s:state' % source) or b'').upper() == b'OPEN'),
            'approval tasks overdue, not escalated': self.sql(
                "SELECT count(*) FROM approval_tasks WHERE status IN ('pending', 'assigned') AND due_at < now() "
                "AND escalation_level = 0"),
            'overdue tasks auto-approved by policy': self.sql(
                "SELECT count(*) FROM approval_tasks WHERE decided_by LIKE 'cerniq.ops%'"),
            'unscored companies, scoring not requested': self.sql(
                'SELECT count(*) FROM silver_companies WHERE total_quality_score IS NULL AND is_master_record '
                'AND scoring_requested_at IS NULL'),
            'rows past retention (bronze 30 d, log 90 d)': self.sql(RETENTION_SQL),
            'Redis cache keys': sum(1 for _key in client.scan_iter(match='cache:*', count=1000)),
        }
        client.close()
        return facts

    # ------------------------------------------------------------------ the run
    def run(self):
        started = time.monotonic()
        self.stage('Starting throwaway PostgreSQL and Redis on free loopback ports')
        self.pg = PostgresServer().start()
        self.redis = RedisServer().start()
        self.api = HttpRecorder().__enter__()
        self.write_state()
        print('    PostgreSQL 127.0.0.1:%d, Redis 127.0.0.1:%d, CERNIQ API stand-in %s' % (
            self.pg.port, self.redis.port, self.api.url))
        self.write_inventory()

        self.stage('Loading the CERNIQ schema (schema/migrations)')
        self.playbook('schema', 'playbooks/load_schema.yml', show=False)
        print('    schema applied')

        self.stage('Loading synthetic data (seed %s) and breaking it the way runbook section 2 describes' % SEED)
        self.playbook('seed', 'playbooks/lab_seed.yml', dict(cerniq_lab_seed=SEED), show=False)
        client = self.redis.client()
        for i in range(2000):
            client.set('cache:company:%d' % i, 'x')
        client.set('session:expired:demo', 'x')
        self.break_ingest_queue(client)
        client.close()
        before = self.snapshot()
        for key, value in before.items():
            print('    %-42s %s' % (key, value))

        self.stage('Diagnosing queues, circuit breakers and rate limits')
        self.playbook('diagnose', 'playbooks/diagnose_queues.yml')

        self.stage('Runbook 2.1 - import stuck in processing (cancel, repair stalled jobs safely)')
        self.playbook('stuck-import', 'playbooks/runbook/stuck_import.yml', dict(cerniq_confirm=True))

        self.stage('Runbook 2.2 - enrichment rate limiting (reset the OPEN circuit breaker)')
        self.playbook('rate-limiting', 'playbooks/runbook/rate_limiting.yml', dict(cerniq_confirm=True))

        self.stage('Runbook 2.3 - HITL SLA breach (release, escalate through the API, auto-approve by policy)')
        self.playbook('sla-breach', 'playbooks/runbook/sla_breach.yml',
                      dict(cerniq_confirm=True, cerniq_auto_approve=True))

        self.stage('Runbook 2.4 - quality score anomalies (reset sub-scores, trigger scoring)')
        self.playbook('quality', 'playbooks/runbook/quality_anomalies.yml', dict(cerniq_confirm=True))

        self.stage('The live BullMQ worker drains the ingest queue, requeued jobs included')
        processed = self.run_worker()

        self.stage('Daily maintenance (runbook 3.1): vacuum, purge, archive, Redis cleanup')
        self.playbook('daily', 'playbooks/daily_maintenance.yml', dict(cerniq_redis_cleanup_enabled=True))

        self.stage('Weekly maintenance (runbook 3.2): a pg_dump, then the weekly job verifies it; index report (3.3)')
        backups = self.dump_database()
        self.playbook('weekly', 'playbooks/weekly_maintenance.yml', dict(cerniq_backup_path=backups))
        self.playbook('index-report', 'playbooks/index_report.yml')

        self.stage('Capacity report (runbook 6)')
        self.playbook('capacity', 'playbooks/capacity_report.yml',
                      dict(cerniq_report_dir=os.path.join(STATE_DIR, 'reports')), show=False)

        after = self.snapshot()
        self.summary(before, after, processed, time.monotonic() - started)

    def dump_database(self):
        """A nightly-style pg_dump of the demo database, for the weekly job's verification (runbook 3.2 step 5)."""
        backups = os.path.join(STATE_DIR, 'backups')
        os.makedirs(backups, exist_ok=True)
        params = self.pg.params()
        target = os.path.join(backups, 'cerniq_db-%s.dump' % time.strftime('%Y%m%dT%H%M%S'))
        subprocess.run([os.path.join(self.pg.bindir, 'pg_dump'), '-Fc', '-h', params['login_host'],
                        '-p', str(params['login_port']), '-U', params['login_user'], '-f', target,
                        params['login_db']], env=dict(os.environ, PGPASSWORD=params['login_password']),
                       check=True, stdout=subprocess.DEVNULL)
        print('    pg_dump -Fc -> %s (%d kB)' % (target, os.path.getsize(target) // 1024))
        return backups

    def break_ingest_queue(self, client):
        """Real BullMQ workers: one crashes holding jobs (orphaned in active), one keeps working."""
        run(PY_CURRENT, 'produce', self.redis.port, INGEST_QUEUE, '--count', 300)
        orphans = orphan_active_jobs(PY_CURRENT, self.redis.port, INGEST_QUEUE, client, 120,
                                     record='demo:crashed-worker')
        # The live worker is slow (1 s per job, 5 at a time) so it still holds locked jobs when
        # the repair runs; its stalled-job checker is off, so only the repair can requeue the orphans.
        self.live_worker = start_worker(PY_CURRENT, self.redis.port, INGEST_QUEUE, '--concurrency', 5,
                                        '--sleep-ms', 1000, '--record', 'demo:processed', '--seconds', 900)
        print('    a real BullMQ worker crashed holding %d ingest jobs; another worker is alive and busy'
              % len(orphans))

    def run_worker(self):
        """Let the live worker drain the queue; every job must have run exactly once."""
        client = self.redis.client()
        prefix = 'bull:%s:' % INGEST_QUEUE
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            left = client.llen(prefix + 'wait') + client.llen(prefix + 'active') + client.zcard(prefix + 'prioritized')
            if left == 0:
                break
            time.sleep(1)
        self.stop_worker()
        ids = [x.decode() for x in client.lrange('demo:processed', 0, -1)]
        crashed = {x.decode() for x in client.lrange('demo:crashed-worker', 0, -1)}
        result = dict(crashed=len(crashed), processed=len(set(ids)), duplicates=len(ids) - len(set(ids)),
                      left=client.llen(prefix + 'wait') + client.llen(prefix + 'active'),
                      completed=client.zcard(prefix + 'completed'))
        print('    %(processed)d jobs processed by the live worker (%(crashed)d of them requeued from the crashed '
              'one), %(duplicates)d processed twice, %(left)d left in wait/active, %(completed)d completed' % result)
        client.close()
        return result

    def stop_worker(self):
        worker = getattr(self, 'live_worker', None)
        if worker and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    def summary(self, before, after, processed, elapsed):
        print('\n%s== Demo summary ==%s  (%.0f s; logs and reports in %s)\n' % (BOLD, RESET, elapsed, STATE_DIR))
        print('| %-42s | %8s | %8s |' % ('what', 'found', 'after'))
        print('|%s|%s|%s|' % ('-' * 44, '-' * 10, '-' * 10))
        for key in before:
            print('| %-42s | %8s | %8s |' % (key, before[key], after[key]))
        print('\nBullMQ: a crashed worker orphaned %(crashed)d jobs; %(processed)d jobs processed, '
              '%(duplicates)d ran twice, %(left)d left waiting.' % processed)
        calls = {}
        for request in self.api.requests:
            kind = 'escalate' if request['path'].endswith('/escalate') else request['path']
            calls[kind] = calls.get(kind, 0) + 1
        received = ', '.join('%s x%d' % item for item in sorted(calls.items())) or 'no calls'
        print('CERNIQ API stand-in received: %s' % received)
        print('Capacity report: %s' % os.path.join(STATE_DIR, 'reports', 'capacity.md'))
        with open(os.path.join(STATE_DIR, 'summary.json'), 'w') as handle:
            json.dump(dict(mode='local', found=before, after=after, bullmq=processed, api_calls=calls,
                           elapsed_s=round(elapsed)), handle, indent=2)

    # ------------------------------------------------------------------ state
    def write_inventory(self):
        self.inventory = os.path.join(STATE_DIR, 'inventory.yml')
        with open(self.inventory, 'w') as handle:
            handle.write('all:\n  hosts:\n    localhost:\n      ansible_connection: local\n'
                         '      ansible_python_interpreter: %s\n' % sys.executable)
        self.vars_file = os.path.join(STATE_DIR, 'vars.json')
        with open(self.vars_file, 'w') as handle:
            json.dump(dict(cerniq_postgres=self.pg.params(), cerniq_redis=self.redis.params(),
                           cerniq_api_url=self.api.url, cerniq_worker_restart='none'), handle)
        os.chmod(self.vars_file, 0o600)

    def write_state(self):
        with open(os.path.join(STATE_DIR, 'state.json'), 'w') as handle:
            json.dump(dict(pids=[self.pg.proc.pid, self.redis.proc.pid], dirs=[self.pg.base, self.redis.base]),
                      handle)

    def stop(self):
        self.stop_worker()
        for server in (self.redis, self.pg):
            if server:
                server.stop()
        if self.api:
            self.api.__exit__(None, None, None)
        state = os.path.join(STATE_DIR, 'state.json')
        if os.path.exists(state):
            os.unlink(state)


def down():
    """Stop what an interrupted demo left behind (servers recorded in the state file); keep its output."""
    state = os.path.join(STATE_DIR, 'state.json')
    if os.path.exists(state):
        with open(state) as handle:
            data = json.load(handle)
        for pid in data.get('pids', []):
            try:
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                pass
        for path in data.get('dirs', []):
            shutil.rmtree(path, ignore_errors=True)
        os.remove(state)
        print('demo: stopped the local servers an interrupted local demo had left')
    vars_file = os.path.join(STATE_DIR, 'vars.json')  # the throwaway servers' passwords
    if os.path.exists(vars_file):
        os.remove(vars_file)
    if os.path.isdir(STATE_DIR):
        print('demo: kept the local demo\'s summary and logs in %s (`rm -r %s` removes them)' % (STATE_DIR, STATE_DIR))


def main():
    down_quietly = os.path.exists(os.path.join(STATE_DIR, 'state.json'))
    if down_quietly:
        down()
    shutil.rmtree(STATE_DIR, ignore_errors=True)  # a new run replaces the last one's output
    return run_demo(Demo())
