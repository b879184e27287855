"""Test helpers around real BullMQ workers (cerniq_testkit/bullmq_worker.py in subprocesses)."""

import json
import os
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bullmq_worker.py')
PY_CURRENT = os.path.join(REPO, '.venv', 'bin', 'python')
PY_V5 = os.path.join(REPO, '.venv-bullmq5', 'bin', 'python')
FLAVOURS = {'current': PY_CURRENT, 'v5': PY_V5}


def _base(py, port, queue, prefix='bull', cluster=False, password=None):
    args = [py, WORKER]
    tail = ['--port', str(port), '--queue', queue, '--prefix', prefix]
    if cluster:
        tail.append('--cluster')
    if password:
        tail += ['--password', password]
    return args, tail


def run(py, command, port, queue, *extra, **kw):
    args, tail = _base(py, port, queue, kw.get('prefix', 'bull'), kw.get('cluster', False))
    proc = subprocess.run(args + [command] + tail + [str(e) for e in extra], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=kw.get('timeout', 120), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_worker(py, port, queue, *extra, **kw):
    args, tail = _base(py, port, queue, kw.get('prefix', 'bull'), kw.get('cluster', False))
    return subprocess.Popen(args + ['work'] + tail + [str(e) for e in extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, process_group=0)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def wait_until(predicate, timeout=60, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError('timed out waiting for %s' % what)


def orphan_active_jobs(py, port, queue, client, count, prefix='bull', record='test:first-worker', cluster=False):
    """A real worker takes ``count`` jobs, is SIGKILLed, and its short locks expire.

    Returns the ids the dead worker had started (they are now orphaned in ``active``).
    """
    active = ('%s:%s:active' % (prefix, queue)).encode()
    proc = start_worker(py, port, queue, '--concurrency', count, '--lock-ms', 800, '--sleep-ms', 600000,
                        '--record', record, prefix=prefix, cluster=cluster)
    try:
        wait_until(lambda: client.llen(record) >= count and client.llen(active) >= count, what='jobs taken')
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    ids = list(client.lrange(record, 0, -1))
    lock_keys = [('%s:%s:' % (prefix, queue)).encode() + i + b':lock' for i in ids]
    wait_until(lambda: not any(client.exists(k) for k in lock_keys), what='locks expired')
    return ids


def snapshot(client):
    """Every key with its type and DUMP (the full persistent state), plus TTL presence."""
    state = {}
    for key in client.scan_iter(count=1000):
        state[key] = (client.type(key), client.dump(key))
    return state
