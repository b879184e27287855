"""The four runbook procedures as AWX runs them: the example project's wrappers under ansible-runner.

Every job gets a pseudo-terminal (as in AWX) and must never wait for input (run_job fails on a
runner timeout or a question). Without cerniq_confirm a job reports what it would do and
succeeds; with it, it acts - with and without the optional settings (API URL, worker restart,
Redis). The credentials come as environment variables (the CERNIQ credential type of the
example project) and never appear in the job output or events. The CERNIQ HTTP API cannot run
here: cerniq_testkit.http_recorder stands in for it.
"""

import contextlib
import os
import signal
import subprocess

from tests.runner.awx_job import REPO
from tests.runner.conftest import SEED
from cerniq_testkit.http_recorder import HttpRecorder

PY = os.path.join(REPO, '.venv', 'bin', 'python')
WORKER = os.path.join(REPO, 'cerniq_testkit', 'bullmq_worker.py')


@contextlib.contextmanager
def bullmq_consumer(services, queue, count):
    """A real BullMQ worker that processes ``count`` jobs of ``queue`` (recorded in test:consumed)."""
    consumer = subprocess.Popen(
        [PY, WORKER, 'work', '--port', str(services.redis.port), '--password', services.redis.password,
         '--queue', queue, '--prefix', 'bull', '--record', 'test:consumed', '--seconds', '120', '--until', str(count)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    try:
        yield
    finally:
        os.killpg(consumer.pid, signal.SIGKILL)
        consumer.wait()


def _stuck_status(cerniq_db, batch_ids):
    return cerniq_db.query('SELECT array_agg(DISTINCT status) FROM bronze_import_batches WHERE id = ANY(%s::uuid[])',
                           batch_ids)[0]


def test_stuck_import_reports_only_without_confirm(job, cerniq_db):
    stuck = cerniq_db.load().inject(['stuck_import'])['stuck_import']
    done = job('runbook_stuck_import.yml', cerniq_db.connections())
    assert done.status == 'successful', done
    assert 'Report only' in done.stdout and '- cancel the 1 import(s)' in done.stdout
    assert _stuck_status(cerniq_db, stuck['batch_ids']) == ['processing']
    assert cerniq_db.redis.llen('bull:bronze:ingest:csv:active') == 1
    stats = done.artifacts['cerniq_stuck_import']
    assert stats['decision'] == 'report_only' and stats['acted'] is False and stats['stuck_after'] == 1


def test_stuck_import_confirmed_without_redis_cancels_and_leaves_the_queue(job, cerniq_db):
    stuck = cerniq_db.load().inject(['stuck_import'])['stuck_import']
    done = job('runbook_stuck_import.yml', cerniq_db.connections(redis=False), extravars={'cerniq_confirm': True})
    assert done.status == 'successful', done
    assert done.changed('Act - cancel the stuck imports (only those still stuck at the update)')
    assert _stuck_status(cerniq_db, stuck['batch_ids']) == ['cancelled']
    assert cerniq_db.redis.llen('bull:bronze:ingest:csv:active') == 1     # Redis not configured: not touched
    assert 'queues not repaired (cerniq_redis is not set)' in done.stdout
    assert done.artifacts['cerniq_stuck_import']['stalled_jobs_moved'] == 0


def test_stuck_import_confirmed_with_redis_and_worker_restart(job, cerniq_db, services, podman_worker):
    """Runbook 2.1 in full: cancel, move the stalled job back, restart the worker, wait for progress."""
    stuck = cerniq_db.load().inject(['stuck_import'])['stuck_import']
    container, started_at = podman_worker
    before = started_at()
    # A real BullMQ worker consumes the queue, so the progress check after the restart sees the job done.
    with bullmq_consumer(services, 'bronze:ingest:csv', 1):
        done = job('runbook_stuck_import.yml', cerniq_db.connections(),
                   extravars={'cerniq_confirm': True, 'cerniq_worker_restart': 'podman', 'cerniq_ingest_worker': container,
                              'cerniq_restart_progress_retries': 60, 'cerniq_restart_progress_delay': 1})
    assert done.status == 'successful', done
    for task in ('Act - cancel the stuck imports (only those still stuck at the update)',
                 'Act - move their stalled jobs back to waiting', 'Restart worker containers'):
        assert done.changed(task), task
    assert _stuck_status(cerniq_db, stuck['batch_ids']) == ['cancelled']
    assert started_at() != before
    stats = done.artifacts['cerniq_stuck_import']
    assert stats['stalled_jobs_moved'] == 1 and stats['queues_repaired'] == ['bronze:ingest:csv']
    assert stats['worker_restart'] == 'podman' and stats['stuck_after'] == 0
    assert cerniq_db.redis.lrange('test:consumed', 0, -1) == [job_id.encode() for job_id in stuck['job_ids']]


def test_rate_limiting_reports_then_acts_with_worker_settings(job, cerniq_db, services, podman_worker, tmp_path):
    injected = cerniq_db.load().inject(['circuit_open'], delayed_jobs=4)['circuit_open']
    report = job('runbook_rate_limiting.yml', cerniq_db.connections())
    assert report.status == 'successful', report
    assert 'Report only' in report.stdout and cerniq_db.redis.get('circuit:anaf:state') == b'OPEN'
    assert report.artifacts['cerniq_rate_limiting']['open_after'] == ['anaf']

    container, started_at = podman_worker
    before = started_at()
    env_file = tmp_path / 'workers.env'
    env_file.write_text('ANAF_CONCURRENCY=4\nTERMENE_CONCURRENCY=10\n')
    # The promoted jobs wait for a worker: a real BullMQ worker takes them after the restart.
    with bullmq_consumer(services, 'silver:enrich:anaf-fiscal-status', len(injected['delayed_job_ids'])):
        done = job('runbook_rate_limiting.yml', cerniq_db.connections(),
                   extravars={'cerniq_confirm': True, 'cerniq_promote_delayed': True, 'cerniq_worker_restart': 'podman',
                              'cerniq_enrichment_worker': container, 'cerniq_worker_env_file': str(env_file),
                              'cerniq_restart_progress_retries': 60, 'cerniq_restart_progress_delay': 1})
    assert done.status == 'successful', done
    for task in ('Act - reset the OPEN breakers', 'Act - promote the delayed jobs (only when asked)',
                 'Change worker settings in their env file before the restart', 'Restart worker containers'):
        assert done.changed(task), task
    assert cerniq_db.redis.get('circuit:anaf:state') is None
    assert cerniq_db.redis.zcard('bull:silver:enrich:anaf-fiscal-status:delayed') == 0
    assert env_file.read_text() == 'ANAF_CONCURRENCY=1\nTERMENE_CONCURRENCY=5\n'
    assert started_at() != before
    stats = done.artifacts['cerniq_rate_limiting']
    assert stats['reset'] == ['anaf'] and stats['open_after'] == []
    assert stats['delayed_promoted'] == len(injected['delayed_job_ids'])


def test_rate_limiting_without_redis_fails_naming_the_setting(job, cerniq_db):
    done = job('runbook_rate_limiting.yml', cerniq_db.connections(redis=False), extravars={'cerniq_confirm': True})
    assert done.status == 'failed'
    assert done.failures() == [('localhost', 'localhost: cerniq_redis is not set: the breakers and queues live in '
                                             'Redis (cerniq_redis: {redis_host: ...})')]


def test_sla_breach_reports_only_without_confirm(job, cerniq_db):
    cerniq_db.load().inject(['sla_breach'])
    with HttpRecorder() as api:
        done = job('runbook_sla_breach.yml', dict(cerniq_db.connections(), cerniq_api_url=api.url))
        assert api.requests == []
    assert done.status == 'successful', done
    assert 'Report only' in done.stdout and '- escalate the 12 breached task(s) through %s' % api.url in done.stdout
    stats = done.artifacts['cerniq_sla_breach']
    assert stats['decision'] == 'report_only' and stats['breached_before'] == stats['breached_after'] == 12


def test_sla_breach_confirmed_without_api_url_releases_and_verifies(job, cerniq_db):
    """The verify step used to crash here (the skipped escalation's `skipped: true` read as a list)."""
    breach = cerniq_db.load().inject(['sla_breach'])['sla_breach']
    done = job('runbook_sla_breach.yml', cerniq_db.connections(), extravars={'cerniq_confirm': True})
    assert done.status == 'successful', done
    assert done.changed("Act - give the overloaded operators' urgent tasks back to the pool")
    assert 'escalated 0, auto-approved 0' in ' '.join(done.stdout.split())
    assert '(escalation not configured: set cerniq_api_url)' in done.stdout
    assert cerniq_db.query("SELECT count(*) FROM approval_tasks WHERE assigned_to = %s AND status = 'assigned' "
                           "AND due_at < now() + interval '2 hours'", breach['overloaded_operator_id'])[0] == 0
    stats = done.artifacts['cerniq_sla_breach']
    assert stats['escalated'] == 0 and stats['released'] > 0 and stats['escalation'].startswith('not configured')


def test_sla_breach_confirmed_with_api_escalates_with_the_credential_token(job, cerniq_db, services):
    breach = cerniq_db.load().inject(['sla_breach'])['sla_breach']
    with HttpRecorder() as api:
        done = job('runbook_sla_breach.yml', dict(cerniq_db.connections(), cerniq_api_url=api.url),
                   extravars={'cerniq_confirm': True, 'cerniq_auto_approve': True,
                              'cerniq_escalate_fallback': 'manager2.t1.s%s@cerniq.invalid' % SEED})
    assert done.status == 'successful', done
    assert len(api.requests) == 12
    assert {r['headers']['Authorization'] for r in api.requests} == {'Bearer %s' % services.api_token}
    assert cerniq_db.query('SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND escalation_level = 1',
                           breach['overdue_task_ids'])[0] == 12
    stats = done.artifacts['cerniq_sla_breach']
    assert stats['escalated'] == 12 and stats['auto_approved'] == 2


def test_quality_anomalies_report_then_act_without_api_or_redis(job, cerniq_db):
    cerniq_db.load().inject(['missing_scores'], missing_scores=5)
    connections = cerniq_db.connections(redis=False)
    report = job('runbook_quality_anomalies.yml', connections)
    assert report.status == 'successful', report
    assert 'Report only' in report.stdout and 'scoring queues not read: cerniq_redis is not set' in report.stdout
    done = job('runbook_quality_anomalies.yml', connections, extravars={'cerniq_confirm': True})
    assert done.status == 'successful', done
    assert done.changed('Act - clear stale sub-scores so they are recalculated')
    assert 'sent 0 to scoring (cerniq_api_url not set)' in done.stdout
    stats = done.artifacts['cerniq_quality_anomalies']
    assert stats['subscores_reset'] == stats['stale_subscores_before'] >= 5
    assert stats['stale_subscores_after'] == 0 and stats['sent_to_scoring'] == 0


def test_quality_anomalies_with_api_redis_and_worker_restart(job, cerniq_db, podman_worker):
    company_ids = cerniq_db.load().inject(['missing_scores'], missing_scores=5)['missing_scores']['company_ids']
    container, started_at = podman_worker
    before = started_at()
    with HttpRecorder() as api:
        done = job('runbook_quality_anomalies.yml', dict(cerniq_db.connections(), cerniq_api_url=api.url),
                   extravars={'cerniq_confirm': True, 'cerniq_scoring_batch_size': 2,
                              'cerniq_scoring_payload': 'company_ids', 'cerniq_worker_restart': 'podman',
                              'cerniq_scoring_worker': container, 'cerniq_restart_progress_delay': 1})
    assert done.status == 'successful', done
    assert done.changed('Act - re-trigger scoring through the API') and done.changed('Restart worker containers')
    sent = [i for r in api.requests for i in r['body']['companyIds']]
    assert set(sent) <= set(company_ids) and len(set(sent)) == len(sent) == 5   # the 5 complete ones; the partial one is not eligible
    assert started_at() != before
    assert done.artifacts['cerniq_quality_anomalies']['sent_to_scoring'] == len(sent)
