#!/usr/bin/env python
"""Benchmark: BullMQ's own stalled-job Lua vs the collection's batched repair, on identical data.

Run from the repository root with the project venv (needs the PyPI ``bullmq`` package only
to read its ``moveStalledJobsToWait`` Lua at run time; nothing of it is committed here):

    .venv/bin/python benchmarks/bullmq_repair.py [--orphans 100000] [--live 3000] [--big 1000000]

First, as users run it: BullMQ's own script (the baseline) and ``cerniq.ops.bullmq_queue``
``state=repaired`` with the batch size and max stalled count ``repair_queues.yml`` passes, through
``ansible-playbook`` (benchmarks/playbook_timing.py: module seconds = playbook minus a no-op playbook
run right before it; also the module process's own lifetime), in ``--repeat`` paired rounds, with the
Redis CPU, the longest server call (SLOWLOG) and another client's worst PING (benchmarks/ping_probe.py).

With ``--engine``, also engine level (``Queue.repair()``, no Ansible start-up). Prints, for the same data (``--orphans``
lockless active jobs + ``--live`` active jobs with a live lock, interleaved, ``meta.version``
bullmq:6.7.0), in ``--repeat`` paired rounds (ours, then BullMQ's on freshly built data):
  - total time of BullMQ's moveStalledJobsToWait (the marking pass and the moving pass) and of ours,
    with the CPU time Redis spent (INFO cpu: on a shared machine the wall time mostly measures how
    often Redis got a core; the CPU time measures the work);
  - the medians and the ratio of the medians, and each round's ratio;
  - the longest single Redis call of ours (client-side, per EVALSHA; server-side, SLOWLOG) and the
    worst PING round trip seen by a probe thread during each run (how long other clients waited);
then the peak RSS of the real module processes (bullmq_queue_info, bullmq_queue in check mode
and for real) on a queue holding ``--big`` jobs.
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.ping_probe import PingProbe  # noqa: E402
from benchmarks.playbook_timing import PairedBenchmark, Sample, machine_line  # noqa: E402
from cerniq_testkit.ansible_run import collections_root  # noqa: E402
from cerniq_testkit.servers import RedisServer  # noqa: E402

sys.path.insert(0, collections_root())
from ansible_collections.cerniq.ops.plugins.module_utils.bullmq import Queue  # noqa: E402

PREFIX = 'bull'
NAME = 'bronze:ingest:csv'
BASE = '%s:%s:' % (PREFIX, NAME)


def bullmq_stalled_lua():
    import bullmq
    pattern = os.path.join(os.path.dirname(bullmq.__file__), 'commands', 'moveStalledJobsToWait-*.lua')
    path = sorted(glob.glob(pattern))[0]
    with open(path) as handle:
        return path, handle.read()


def build(client, orphans, live, wait=0, chunk=5000):
    """``orphans`` lockless + ``live`` locked active jobs (interleaved), ``wait`` waiting jobs."""
    client.flushall()
    now = int(time.time() * 1000)
    total = orphans + live
    every = (total // live) if live else 0
    pipe = client.pipeline(transaction=False)
    n_live = 0
    for n in range(total):
        job_id = str(n + 1)
        pipe.hset(BASE + job_id, mapping={'name': 'import', 'data': '{"row":%d}' % n, 'opts': '{}',
                                          'timestamp': now - 600000, 'processedOn': now - 300000, 'ats': 1})
        pipe.lpush(BASE + 'active', job_id)
        if every and n % every == 0 and n_live < live:
            pipe.set(BASE + job_id + ':lock', 'worker-token', px=3600000)
            n_live += 1
        if n % chunk == chunk - 1:
            pipe.execute()
    for n in range(wait):
        job_id = str(total + n + 1)
        pipe.hset(BASE + job_id, mapping={'name': 'import', 'data': '{"row":%d}' % n, 'opts': '{}',
                                          'timestamp': now - 60000})
        pipe.lpush(BASE + 'wait', job_id)
        if n % chunk == chunk - 1:
            pipe.execute()
    pipe.hset(BASE + 'meta', mapping={'opts.maxLenEvents': 10000, 'version': 'bullmq:6.7.0'})
    pipe.execute()
    return n_live


class Probe(threading.Thread):
    """PINGs every 2 ms on its own connection; records the worst round trip."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.client = server.client(socket_timeout=900, socket_connect_timeout=900)
        self.worst = 0.0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                self.client.ping()
            except Exception:  # noqa: BLE001 - a BUSY reply still means "blocked until now"
                pass
            self.worst = max(self.worst, time.perf_counter() - started)
            time.sleep(0.002)

    def finish(self):
        self.stop.set()
        self.join()
        return self.worst


def slowlog_start(client):
    """Record every command's server-side execution time (SLOWLOG, threshold 0)."""
    client.config_set('slowlog-log-slower-than', 0)
    client.config_set('slowlog-max-len', 1000000)
    client.slowlog_reset()


def slowlog_evalsha(client):
    """Server-side durations (s) of the EVALSHA calls recorded since slowlog_start."""
    entries = client.slowlog_get(1000000)
    client.config_set('slowlog-log-slower-than', 10000)
    return sorted(e['duration'] / 1e6 for e in entries
                  if (e['command'] or b'').split(b' ')[0].upper() == b'EVALSHA')


def redis_cpu(client):
    """CPU seconds the Redis server has used so far (user + system)."""
    info = client.info('cpu')
    return info['used_cpu_user'] + info['used_cpu_sys']


def run_bullmq(server, client, script):
    keys = [BASE + k for k in ('stalled', 'wait', 'active', 'stalled-check', 'meta', 'paused', 'marker',
                               'events', 'repeat')]
    lua = client.register_script(script)
    slowlog_start(client)
    probe = Probe(server)
    probe.start()
    cpu = redis_cpu(client)
    started = time.perf_counter()
    calls = []
    moved = 0
    for _unused in range(2):  # pass 1 marks every active id as candidate, pass 2 moves the lockless ones
        client.delete(BASE + 'stalled-check')
        t0 = time.perf_counter()
        moved += len(lua(keys=keys, args=[1, BASE, int(time.time() * 1000), 30000]))
        calls.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    cpu = redis_cpu(client) - cpu
    return dict(total=total, cpu=cpu, calls=calls, moved=moved, probe=probe.finish(), server=slowlog_evalsha(client))


def run_ours(server, client, batch):
    queue = Queue(client, NAME, prefix=PREFIX, batch_size=batch)
    slowlog_start(client)
    probe = Probe(server)
    probe.start()
    cpu = redis_cpu(client)
    started = time.perf_counter()
    result = queue.repair()
    total = time.perf_counter() - started
    cpu = redis_cpu(client) - cpu
    return dict(total=total, cpu=cpu, calls=list(queue.call_times), moved=result['moved'],
                skipped=result['skipped_locked'], probe=probe.finish(), server=slowlog_evalsha(client))


def peak_rss(cmd, env):
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError('module failed: %s %s' % (out[-2000:], err[-2000:]))
    return peak, out.decode()


def module_rss(server, big, batch):
    import json
    import tempfile
    env = dict(os.environ, PYTHONPATH=collections_root())
    results = {}
    for label, module, args, check in (
            ('bullmq_queue_info', 'bullmq_queue_info', dict(names=[NAME]), False),
            ('bullmq_queue (check mode)', 'bullmq_queue', dict(name=NAME), True),
            ('bullmq_queue (repair)', 'bullmq_queue', dict(name=NAME), False)):
        module_args = dict(args, redis_host='127.0.0.1', redis_port=server.port, batch_size=batch,
                           _ansible_check_mode=check, _ansible_remote_tmp=tempfile.gettempdir(),
                           _ansible_tmpdir=tempfile.mkdtemp(prefix='cerniq-bench-'))
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': module_args}, handle)
        started = time.perf_counter()
        peak, out = peak_rss([sys.executable, '-m', 'ansible_collections.cerniq.ops.plugins.modules.' + module,
                              handle.name], env)
        os.unlink(handle.name)
        results[label] = (peak, time.perf_counter() - started, json.loads(out[out.index('{'):]))
    return results


def repair_settings():
    """The batch size and max stalled count repair_queues.yml passes (the cerniq role's defaults)."""
    import yaml
    with open(os.path.join(REPO, 'roles', 'cerniq', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)
    return defaults['cerniq_repair_batch_size'], defaults['cerniq_repair_max_stalled_count']


def through_playbook(server, client, script, args):
    """BullMQ's own script and the module through ansible-playbook, paired rounds (playbook_timing)."""
    batch, max_stalled = repair_settings()

    def fresh():
        build(client, args.orphans, args.live)
        slowlog_start(client)

    def bullmq():
        run = run_bullmq(server, client, script)
        assert run['moved'] == args.orphans, run['moved']
        return Sample(run['total'], **{'Redis CPU s': run['cpu'], 'longest server call ms': run['server'][-1] * 1000,
                                       'worst PING ms': run['probe'] * 1000})

    probes = {}

    def start_probe():
        fresh()
        probes['probe'] = PingProbe(server.port).start()  # a process of its own: no GIL waits measured
        probes['cpu'] = redis_cpu(client)

    def after_module(result):
        if result.get('moved') != args.orphans:
            raise RuntimeError('the module moved %r jobs, not %d' % (result.get('moved'), args.orphans))
        # The probe and the CPU first: reading the slow log (every command, the probe's PINGs too) is
        # itself a long server call.
        worst_ping = probes['probe'].stop().worst_ms
        cpu = redis_cpu(client) - probes['cpu']
        calls = slowlog_evalsha(client)
        return {'Redis CPU s': cpu, 'longest server call ms': calls[-1] * 1000, 'worst PING ms': worst_ping,
                'calls': len(calls)}

    bench = PairedBenchmark(runs=args.repeat, autogroup_nice=args.autogroup_nice)
    bench.add('BullMQ moveStalledJobsToWait (2 passes)', bullmq, prepare=fresh, baseline=True)
    bench.add_module('bullmq_queue repaired, as repair_queues.yml', 'bullmq_queue', dict(
        server.params(), prefix=PREFIX, name=NAME, state='repaired', batch_size=batch,
        max_stalled_count=max_stalled), prepare=start_probe, rss=True, figures=after_module)
    bench.run()
    bench.print_report('repair %d orphaned + %d live-locked active jobs, through ansible-playbook (module seconds = '
                       'playbook minus the no-op playbook run right before it; ratio on module process s: the module process '
                       'alone)' % (args.orphans, args.live))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--orphans', type=int, default=100000)
    parser.add_argument('--live', type=int, default=3000)
    parser.add_argument('--batch', type=int, default=500)
    parser.add_argument('--repeat', type=int, default=3, help='paired rounds (medians are reported)')
    parser.add_argument('--only-ours', action='store_true', help='skip the (slow) BullMQ runs')
    parser.add_argument('--big', type=int, default=1000000, help='jobs in the queue for the RSS run (0: skip)')
    parser.add_argument('--engine', action='store_true',
                        help='also the engine-only rounds (Queue.repair() in this process, labelled so)')
    parser.add_argument('--autogroup-nice', type=int, help='raise the benchmark\'s CPU share (see playbook_timing)')
    args = parser.parse_args()
    path, script = bullmq_stalled_lua()
    # No BUSY replies: let a long script simply block the other clients (that is what we measure).
    with RedisServer(extra_args=['--busy-reply-threshold', '0']) as server:
        client = server.client(socket_timeout=900, socket_connect_timeout=900)
        print('data: %d orphaned active jobs + %d live-locked (interleaved), batch %d'
              % (args.orphans, args.live, args.batch))
        if not args.only_ours:
            print('BullMQ script: %s' % path)
        probe = Probe(server)
        probe.start()
        time.sleep(5)
        print('machine noise: worst PING to the idle Redis over 5 s: %.1f ms (%s)'
              % (probe.finish() * 1000, machine_line()))
        if not args.only_ours:
            through_playbook(server, client, script, args)
        runs, theirs_runs = [], []
        if args.engine:
            print('\nengine only (Queue.repair() in this process, no Ansible):')
        for round_no in range(1, (args.repeat if args.engine or args.only_ours else 0) + 1):
            build(client, args.orphans, args.live)
            ours = run_ours(server, client, args.batch)
            assert ours['moved'] == args.orphans, ours['moved']
            runs.append(ours)
            print('  round %d, ours  : total %6.2f s (Redis CPU %.2f s), %d calls, longest call client-side %.1f ms /'
                  ' server-side %.1f ms, worst PING %.1f ms' % (
                      round_no, ours['total'], ours['cpu'], len(ours['calls']), max(ours['calls']) * 1000,
                      ours['server'][-1] * 1000, ours['probe'] * 1000))
            if args.only_ours:
                continue
            build(client, args.orphans, args.live)
            theirs = run_bullmq(server, client, script)
            assert theirs['moved'] == args.orphans, theirs['moved']
            theirs_runs.append(theirs)
            print('  round %d, BullMQ: total %6.2f s (Redis CPU %.2f s; mark pass %.2f s, move pass %.2f s, one call'
                  ' each), worst PING %.0f ms; round ratio %.1fx' % (
                      round_no, theirs['total'], theirs['cpu'], theirs['calls'][0], theirs['calls'][1],
                      theirs['probe'] * 1000, theirs['total'] / ours['total']))
        ours = sorted(runs, key=lambda r: r['total'])[len(runs) // 2] if runs else None  # the median run
        if ours is not None:
            print('cerniq.ops repair            : median total %6.2f s (runs %s; Redis CPU median %.2f s) in %d calls;'
                  ' moved %d, left %d live; longest call %.1f ms; worst PING %.1f ms'
                  % (ours['total'], ' / '.join('%.2f' % r['total'] for r in runs),
                     statistics.median(r['cpu'] for r in runs), len(ours['calls']), ours['moved'], ours['skipped'],
                     max(max(r['calls']) for r in runs) * 1000, max(r['probe'] for r in runs) * 1000))
            for label, calls in (('client-side', sorted(ours['calls'])), ('server-side', ours['server'])):
                print('ours, per call (%s)  : median %.1f ms, p95 %.1f ms, max %.1f ms (median run)'
                      % (label, calls[len(calls) // 2] * 1000, calls[int(len(calls) * 0.95)] * 1000, calls[-1] * 1000))
            if theirs_runs:
                median_theirs = statistics.median(r['total'] for r in theirs_runs)
                print('BullMQ moveStalledJobsToWait : median total %6.2f s (runs %s; Redis CPU median %.2f s), one call'
                      ' blocking Redis per pass' % (median_theirs, ' / '.join('%.2f' % r['total'] for r in theirs_runs),
                                                    statistics.median(r['cpu'] for r in theirs_runs)))
                print('ratio (BullMQ / ours)        : %.1fx faster (medians of %d paired rounds; per round %s; Redis CPU'
                      ' %.1fx)' % (median_theirs / statistics.median(r['total'] for r in runs), len(runs),
                                   ' / '.join('%.1fx' % (t['total'] / o['total']) for t, o in zip(theirs_runs, runs)),
                                   statistics.median(r['cpu'] for r in theirs_runs)
                                   / statistics.median(r['cpu'] for r in runs)))
        if args.big:
            active = min(100000 + args.live, args.big // 10)
            live = min(args.live, active // 10)
            build(client, active - live, live, wait=args.big - active)
            print('RSS run: queue with %d jobs (%d active of which %d orphaned and %d live, %d waiting)'
                  % (args.big, active, active - live, live, args.big - active))
            for label, (peak, seconds, result) in module_rss(server, args.big, args.batch).items():
                extra = ''
                if 'moved' in result:
                    extra = 'moved %d' % result['moved']
                elif 'queues' in result:
                    extra = 'total %d, candidates %d' % (result['queues'][NAME]['total'],
                                                         result['queues'][NAME]['stalled_candidates'])
                print('  %-26s peak RSS %6.1f MB  %6.1f s  %s' % (label, peak / 1048576.0, seconds, extra))
        client.close()


if __name__ == '__main__':
    main()
