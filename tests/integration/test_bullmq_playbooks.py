"""diagnose_queues.yml and repair_queues.yml against the test Redis with real BullMQ workers."""

import os

from cerniq_testkit.ansible_run import REPO, run_playbook
from cerniq_testkit.bullmq_helpers import PY_CURRENT, orphan_active_jobs, run, snapshot

CSV = 'bronze:ingest:csv'
ANAF = 'silver:enrich:anaf-fiscal-status'


def _seed(redis_server, redis_client):
    run(PY_CURRENT, 'produce', redis_server.port, CSV, '--count', 20)
    dead = orphan_active_jobs(PY_CURRENT, redis_server.port, CSV, redis_client, 5)
    redis_client.delete('test:first-worker')
    run(PY_CURRENT, 'produce', redis_server.port, ANAF, '--count', 7, '--delay', 3600000)
    redis_client.set('circuit:anaf:state', 'OPEN')
    redis_client.set('circuit:anaf:failures', 9)
    redis_client.set('rate_limit:anaf:remaining', 0, px=3600000)  # outlives any run: snapshots compare it
    redis_client.set('circuit:termene:state', 'CLOSED')
    return dead


def test_diagnose_prints_table_circuits_and_verdicts(redis_server, redis_client, redis_params):
    _seed(redis_server, redis_client)
    before = snapshot(redis_client)
    proc = run_playbook(os.path.join(REPO, 'playbooks', 'diagnose_queues.yml'),
                        extra_vars=dict(cerniq_redis=redis_params))
    assert proc.returncode == 0, proc.stdout[-4000:]
    out = proc.stdout
    assert snapshot(redis_client) == before
    row = [line for line in out.splitlines() if '"bronze:ingest:csv ' in line][0]
    assert row.split()[1:5] == ['15', '0', '5', '0']
    assert 'bronze:ingest:csv: STALLED - 5 active job(s) without a lock' in out
    assert 'bronze:ingest:xlsx: MISSING' in out
    assert 'silver:enrich:anaf-fiscal-status: OK' in out
    assert 'circuit=OPEN' in out and 'failures=9' in out and '<- OPEN' in out


def test_repair_dry_run_then_confirmed(redis_server, redis_client, redis_params):
    dead = _seed(redis_server, redis_client)
    before = snapshot(redis_client)
    playbook = os.path.join(REPO, 'playbooks', 'repair_queues.yml')
    dry = run_playbook(playbook, extra_vars=dict(cerniq_redis=redis_params, cerniq_reset_open_circuits=True))
    assert dry.returncode == 0, dry.stdout[-4000:]
    assert 'DRY RUN' in dry.stdout and 'would move 5 stalled job(s) to wait' in dry.stdout
    assert snapshot(redis_client) == before
    done = run_playbook(playbook, extra_vars=dict(cerniq_redis=redis_params, cerniq_repair_confirm=True,
                                                  cerniq_reset_open_circuits=True))
    assert done.returncode == 0, done.stdout[-4000:]
    assert 'moved 5 stalled job(s) to wait' in done.stdout
    assert 'No stalled job left' in done.stdout
    assert 'circuit breakers reset: anaf' in done.stdout
    assert redis_client.llen('bull:%s:active' % CSV) == 0
    assert redis_client.llen('bull:%s:wait' % CSV) == 20
    assert set(dead) <= set(redis_client.lrange('bull:%s:wait' % CSV, 0, -1))
    assert not redis_client.exists('circuit:anaf:state') and redis_client.get('circuit:termene:state') == b'CLOSED'
    again = run_playbook(playbook, extra_vars=dict(cerniq_redis=redis_params, cerniq_repair_confirm=True))
    assert again.returncode == 0 and 'moved 0 stalled job(s)' in again.stdout
