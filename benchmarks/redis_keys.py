#!/usr/bin/env python
"""Benchmark cerniq.ops.redis_keys against runbook 3.1 step 4 on identical data, in one run.

    .venv/bin/python benchmarks/redis_keys.py              # 2M keys, 1M 'cache:*'; then 10M for RSS
    .venv/bin/python benchmarks/redis_keys.py --big 0      # skip the 10M-key memory run

Prints: the runbook pipeline (redis-cli --scan | xargs redis-cli DEL) time vs the engine's, the
ratio (target >= 4x); other clients' PING latency max / p99 during each (target max <= 10 ms);
the engine with the atomic Lua filter path; and the engine process's peak RSS while deleting
--big matching keys (target < 100 MB). Data is loaded with DEBUG POPULATE on a throwaway server.
"""

import argparse
import os
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from tests.support.ansible_run import collections_root  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402

sys.path.insert(0, collections_root())

SLOW_US = 1000  # server calls longer than this are listed (SLOWLOG)

from ansible_collections.cerniq.ops.plugins.module_utils.redis_keys import delete_keys  # noqa: E402

# A separate process (no GIL sharing with the engine) doing PING round trips back to back.
PROBE = r'''
import socket, sys, time
sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
samples = []
sys.stdout.write('ready\n'); sys.stdout.flush()
sock.settimeout(0.001)
stop = False
while not stop:
    start = time.perf_counter()
    sock.sendall(b'PING\r\n')
    data = b''
    sock.settimeout(None)
    while not data.endswith(b'\r\n'):
        data += sock.recv(64)
    samples.append(time.perf_counter() - start)
    time.sleep(0.0005)
    try:
        import select
        if select.select([sys.stdin], [], [], 0)[0]:
            stop = True
    except Exception:
        stop = True
samples.sort()
n = len(samples)
print('%d %.3f %.3f %.3f %.3f' % (n, samples[-1] * 1000, samples[int(n * 0.99) - 1] * 1000, samples[n // 2] * 1000,
                                 time.process_time()))
'''


class Probe(object):
    """PING latency seen by another client while something runs."""

    def __init__(self, port):
        self.proc = subprocess.Popen([sys.executable, '-c', PROBE, str(port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == 'ready'

    def stop(self):
        self.proc.stdin.write('x\n')
        self.proc.stdin.flush()
        out = self.proc.stdout.readline().split()
        self.proc.wait()
        count, worst, p99, p50, cpu = int(out[0]), float(out[1]), float(out[2]), float(out[3]), float(out[4])
        return dict(pings=count, max_ms=worst, p99_ms=p99, p50_ms=p50, cpu=cpu)


def populate(client, matching, others):
    client.flushall()
    started = time.monotonic()
    client.execute_command('DEBUG', 'POPULATE', matching, 'cache')
    if others:
        client.execute_command('DEBUG', 'POPULATE', others, 'other')
    assert client.dbsize() == matching + others
    return time.monotonic() - started


def run_runbook(port):
    cmd = ("redis-cli -p {p} --scan --pattern 'cache:*' | xargs redis-cli -p {p} DEL > /dev/null").format(p=port)
    started = time.monotonic()
    subprocess.run(['bash', '-c', cmd], check=True)
    return time.monotonic() - started


def client_pipeline(client, pattern, count, batch):
    """The alternative design, for comparison: SCAN page to the client, then UNLINK it and fetch
    the next page in one pipelined round trip."""
    started = time.monotonic()
    deleted = 0
    cursor, keys = client.execute_command('SCAN', 0, 'MATCH', pattern, 'COUNT', count)
    while True:
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(keys), batch):
            pipe.execute_command('UNLINK', *keys[start:start + batch])
        if int(cursor):
            pipe.execute_command('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
        replies = pipe.execute()
        if int(cursor) == 0:
            deleted += sum(replies)
            break
        deleted += sum(replies[:-1])
        cursor, keys = replies[-1]
    return deleted, time.monotonic() - started


def fmt_latency(lat):
    return 'max %.2f ms, p99 %.2f ms, p50 %.2f ms over %d PINGs' % (
        lat['max_ms'], lat['p99_ms'], lat['p50_ms'], lat['pings'])


def rss_watch(stop, peak):
    import psutil
    proc = psutil.Process()
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.02)


class Measure(object):
    """Wall time, CPU (server + client) and what other clients saw, around one run.

    CPU seconds and the server's own call durations (SLOWLOG) stay meaningful on a
    shared, busy machine where wall-clock and PING figures include CPU contention.
    """

    def __init__(self, client, port, children=False):
        self.client, self.port, self.children = client, port, children

    def _server_cpu(self):
        info = self.client.info('cpu')
        return info['used_cpu_sys'] + info['used_cpu_user']

    def _client_cpu(self):
        if self.children:
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        else:
            usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self):
        self.client.config_set('slowlog-log-slower-than', SLOW_US)
        self.client.config_set('slowlog-max-len', 100000)
        self.client.slowlog_reset()
        self.client.config_resetstat()
        self.probe = Probe(self.port)
        self.cpu0 = (self._server_cpu(), self._client_cpu())
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.started
        self.latency = self.probe.stop()
        self.server_cpu = self._server_cpu() - self.cpu0[0]
        self.client_cpu = self._client_cpu() - self.cpu0[1]
        if self.children:
            # The probe is a child process too: its CPU is not the runbook's.
            self.client_cpu = max(self.client_cpu - self.latency['cpu'], 0.0)
        slow = [entry for entry in self.client.slowlog_get(100000)
                if entry['command'].split(b' ')[0].upper() not in (b'PING', b'SLOWLOG', b'CONFIG', b'INFO')]
        self.slow_calls = len(slow)
        longest = max(slow, key=lambda entry: entry['duration']) if slow else None
        self.longest_ms = longest['duration'] / 1000.0 if longest else 0.0
        self.longest_cmd = b' '.join(longest['command'].split(b' ')[:2])[:40].decode('utf-8', 'replace') if longest else ''
        self.client.config_set('slowlog-log-slower-than', 10000)
        stats = self.client.info('commandstats')
        ours = [value for name, value in stats.items()
                if name[len('cmdstat_'):].split('|')[0] not in ('ping', 'info', 'config', 'slowlog')]
        scripts = [stats[name] for name in ('cmdstat_evalsha', 'cmdstat_eval') if name in stats]
        if scripts:
            ours = scripts  # commands a script runs are counted too: count the script calls only
        calls = sum(value['calls'] for value in ours)
        self.mean_ms = sum(value['usec'] for value in ours) / 1000.0 / calls if calls else 0.0

    def line(self, label):
        return ('%-38s %6.2f s wall | CPU server %5.2f s + client %5.2f s | server call mean %.2f ms, '
                '> %.0f ms: %d, longest %.2f ms (%s) | PING %s' % (
                    label, self.wall, self.server_cpu, self.client_cpu, self.mean_ms, SLOW_US / 1000.0,
                    self.slow_calls, self.longest_ms, self.longest_cmd, fmt_latency(self.latency)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--keys', type=int, default=2000000, help='total keys (default 2M)')
    parser.add_argument('--matching', type=int, default=1000000, help="keys matching 'cache:*' (default 1M)")
    parser.add_argument('--big', type=int, default=10000000, help='matching keys for the RSS run (0 = skip)')
    parser.add_argument('--scan-count', type=int, default=1000)
    parser.add_argument('--batch-size', type=int, default=1000)
    parser.add_argument('--sweep', action='store_true', help='also time scan_count 100/1000/5000')
    parser.add_argument('--extras', action='store_true',
                        help='also time the client-side pipeline design, a filter, and max_keys')
    args = parser.parse_args()
    others = args.keys - args.matching
    options = dict(scan_count=args.scan_count, batch_size=args.batch_size)

    with RedisServer(extra_args=['--enable-debug-command', 'yes']) as server:
        client = server.client(socket_timeout=600)  # DEBUG POPULATE of 10M keys blocks for a while
        version = client.info('server')['redis_version']
        print('redis-server %s, %d CPUs, load average %.1f; %d keys, %d matching cache:*' % (
            version, os.cpu_count(), os.getloadavg()[0], args.keys, args.matching))

        if not args.keys:
            args.extras = args.sweep = False
        with Measure(client, server.port) as idle:
            time.sleep(1.0)
        print(idle.line('idle server (1 s)'))

        if args.keys:
            compare(client, server, args, others, options)
        big_run(client, server, args, options)
        client.close()


def compare(client, server, args, others, options):
    populate(client, args.matching, others)
    with Measure(client, server.port, children=True) as runbook:
        run_runbook(server.port)
    assert client.dbsize() == others, client.dbsize()
    print(runbook.line('runbook: redis-cli --scan | xargs DEL'))

    populate(client, args.matching, others)
    with Measure(client, server.port) as ours:
        result = delete_keys(client, ['cache:*'], **options)
    assert result['deleted'] == args.matching and client.dbsize() == others, result
    print(ours.line('cerniq.ops.redis_keys engine'))
    print('  speed-up vs runbook: %.1fx wall, %.1fx total CPU (%d page calls)' % (
        runbook.wall / ours.wall, (runbook.server_cpu + runbook.client_cpu) / (ours.server_cpu + ours.client_cpu),
        result['scan_calls']))

    if args.extras:
        populate(client, args.matching, others)
        with Measure(client, server.port) as piped:
            deleted, _unused = client_pipeline(client, b'cache:*', args.scan_count, args.batch_size)
        assert deleted == args.matching
        print(piped.line('alternative: client SCAN + pipelined UNLINK'))

        populate(client, args.matching, others)
        with Measure(client, server.port) as filtered:
            assert delete_keys(client, ['cache:*'], no_ttl_only=True, **options)['deleted'] == args.matching
        print(filtered.line('engine with no_ttl_only filter'))

        populate(client, args.matching, others)
        with Measure(client, server.port) as guarded:
            assert delete_keys(client, ['cache:*'], max_keys=args.matching, **options)['deleted'] == args.matching
        print(guarded.line('engine with max_keys (counting pass)'))

    if args.sweep:
        for count in (100, 1000, 5000):
            populate(client, args.matching, others)
            with Measure(client, server.port) as swept:
                delete_keys(client, ['cache:*'], scan_count=count, batch_size=min(count, 5000))
            print(swept.line('engine scan_count=%d' % count))


def big_run(client, server, args, options):
    if not args.big:
        return
    client.flushall()
    loaded = populate(client, args.big, 0)
    print('loaded %d keys with DEBUG POPULATE in %.1f s' % (args.big, loaded))
    import psutil
    before = psutil.Process().memory_info().rss
    stop, peak = threading.Event(), [before]
    watcher = threading.Thread(target=rss_watch, args=(stop, peak))
    watcher.start()
    with Measure(client, server.port) as measured:
        big = delete_keys(client, ['cache:*'], **options)
        stop.set()  # before Measure reads the SLOWLOG: only the engine's memory counts
        watcher.join()
    assert big['deleted'] == args.big and client.dbsize() == 0, big
    print(measured.line('engine, %d matching keys' % args.big))
    print('  engine process RSS: %.1f MB before, peak %.1f MB while deleting' % (before / 1e6, peak[0] / 1e6))


if __name__ == '__main__':
    main()
