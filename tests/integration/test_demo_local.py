"""`scripts/demo.py local`: the runbook procedures end to end against local throwaway servers.

The demo's own found/after facts are read back from its summary.json and checked against
what the synthetic incidents put in (seed 42): every incident found, every one fixed, and
the crashed BullMQ worker's jobs processed exactly once by the live worker.
"""

import json
import os
import subprocess
import sys

import pytest

from cerniq_testkit.ansible_run import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def local_demo(tmp_path_factory):
    state = tmp_path_factory.mktemp('demo-local')
    env = dict(os.environ, CERNIQ_DEMO_DIR=str(state))
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'demo.py'), 'local'], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, check=False)
    summary = state / 'summary.json'
    return proc, json.loads(summary.read_text()) if summary.exists() else None, state


def test_local_demo_runs_every_stage(local_demo):
    proc, summary, _state = local_demo
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert '==> [12/12]' in proc.stdout
    assert summary is not None and summary['mode'] == 'local'


def test_local_demo_finds_every_incident_and_fixes_it(local_demo):
    _proc, summary, _state = local_demo
    found, after = summary['found'], summary['after']
    assert found['imports stuck in processing'] >= 1 and after['imports stuck in processing'] == 0
    assert found['stalled ingest jobs (active, no lock)'] >= 120
    assert after['stalled ingest jobs (active, no lock)'] == 0
    assert found['circuit breakers OPEN'] == 1 and after['circuit breakers OPEN'] == 0
    assert found['approval tasks overdue, not escalated'] > after['approval tasks overdue, not escalated']
    assert found['overdue tasks auto-approved by policy'] == 0 < after['overdue tasks auto-approved by policy']
    assert found['unscored companies, scoring not requested'] > after['unscored companies, scoring not requested']
    assert found['Redis cache keys'] == 2000 and after['Redis cache keys'] == 0
    # the daily maintenance purged the 400 promoted contacts and archived the 3,000 log rows of retention_due
    assert found['rows past retention (bronze 30 d, log 90 d)'] == 3400
    assert after['rows past retention (bronze 30 d, log 90 d)'] == 0


def test_local_demo_jobs_of_the_crashed_worker_run_exactly_once(local_demo):
    _proc, summary, _state = local_demo
    bullmq = summary['bullmq']
    assert bullmq['crashed'] == 120
    assert bullmq['duplicates'] == 0
    assert bullmq['left'] == 0
    assert bullmq['processed'] == 301  # the 300 produced jobs and the stuck import's stalled job


def test_local_demo_calls_the_api_and_writes_the_capacity_report(local_demo):
    _proc, summary, state = local_demo
    assert summary['api_calls'].get('escalate', 0) >= 1
    assert any(path.startswith('/api/v1/internal/scoring') for path in summary['api_calls'])
    report = (state / 'reports' / 'capacity.md').read_text()
    assert 'queue_depth' in report or 'Queue depth' in report or 'queue depth' in report
