"""The benchmarks still run, on tiny data (their figures mean nothing here: they are printed by the real runs).

Each prints its paired table: the runbook's method (or BullMQ's) as the baseline, the module through
ansible-playbook with its start-up, and a paired ratio.
"""

import os
import subprocess
import sys

import pytest

from cerniq_testkit.ansible_run import REPO

RUNS = {
    'redis_keys.py': ['--keys', '2000', '--runs', '1', '--big', '0'],
    'pg_archive.py': ['--rows', '5000', '--runs', '1'],
    'bullmq_repair.py': ['--orphans', '300', '--live', '10', '--repeat', '1', '--big', '0'],
}


@pytest.mark.parametrize('script', sorted(RUNS))
def test_benchmark_prints_its_paired_table(script):
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', script)] + RUNS[script], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '| start-up (no-op playbook)' in proc.stdout and '(baseline)' in proc.stdout, proc.stdout[-3000:]
    module_rows = [line for line in proc.stdout.splitlines() if line.startswith('| ') and 'x (' in line]
    assert module_rows, proc.stdout[-3000:]


def test_the_ping_probe_has_a_sample_when_the_run_ends_before_its_first_ping():
    """A run shorter than the probe's first round trip (the benchmarks' engine-only rounds, 0.01 s) sent
    'stop' before any PING: the probe had no sample, crashed on the empty list and failed the benchmark
    (seen once under load; an immediate stop, as here, crashed the old probe 4 times in 10). It measures
    at least one round trip now."""
    sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
    try:
        from ping_probe import PingProbe
    finally:
        sys.path.pop(0)
    from cerniq_testkit.servers import RedisServer
    with RedisServer() as server:
        for _attempt in range(10):
            with PingProbe(server.port) as probe:
                pass
            assert probe.pings >= 1 and probe.worst_ms >= probe.p99_ms > 0
