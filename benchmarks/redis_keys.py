#!/usr/bin/env python
"""Benchmark cerniq.ops.redis_keys as users run it, against runbook 3.1 step 4, on issue 18's data.

    .venv/bin/python benchmarks/redis_keys.py                  # 3 rounds, then the 10M-key RSS run
    .venv/bin/python benchmarks/redis_keys.py --big 0 --runs 5
    .venv/bin/python benchmarks/redis_keys.py --phases --big 0 # where the engine's time goes

Data, loaded again before every measured run: ``--keys`` (1M) ``cache:company:<n>`` keys, which go,
among as many ``bull:silver:enrich:<n>`` keys, which stay; 64-byte string values; loaded with
pipelined SET (``redis-cli --pipe``) into a throwaway redis-server.

Measured in the same rounds, alternating order (benchmarks/playbook_timing.py):

* runbook: ``redis-cli --scan --pattern "cache:*" | xargs redis-cli DEL``, as runbook 3.1 step 4
  writes it (plus ``-p <port>``); the baseline of the paired ratios;
* module, max_keys: ``cerniq.ops.redis_keys`` through ``ansible-playbook`` with ``max_keys`` as the
  daily maintenance playbook passes it (``cerniq_redis_cleanup_max_keys``, read from the cerniq
  role's defaults; 1,000,000 when the figures of docs/redis_keys.md were taken, 10,000,000 since) - with 1M,
  below the database's 2M keys, so the guard counts;
* module, no max_keys: the same without the guard;
* engine only (labelled so): ``delete_keys()`` called in this process, no Ansible, both ways;
* idle: nothing runs for 2 s (what the PING probe sees on this machine anyway).

Module seconds are playbook wall time minus the no-op playbook's (start-up, its own row).
Each run also reports what another client saw (a separate process doing PING round trips
throughout: worst and p99), the server's CPU seconds, the longest server call (SLOWLOG) and,
for the module, its process's peak RSS. ``--big N`` then deletes N matching keys (plus one key
that stays, so the guard counts and keeps N names aside) through ansible-playbook with
``max_keys: N`` and reports the module process's peak RSS (target < 100 MB).

``--phases`` measures the engine alone (labelled so), pass by pass, against the runbook: the
unguarded pass; the guard as it was before (a counting pass, then a second SCAN + UNLINK pass);
the guard now (a counting pass keeping the names aside, then UNLINK of the kept names).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks.ping_probe import PingProbe  # noqa: E402
from benchmarks.playbook_timing import (  # noqa: E402
    PairedBenchmark, Sample, machine_line, prioritize, time_playbook, write_playbook)
from cerniq_testkit.ansible_run import collections_root  # noqa: E402
from cerniq_testkit.servers import RedisServer  # noqa: E402

sys.path.insert(0, collections_root())

from ansible_collections.cerniq.ops.plugins.module_utils.redis_keys import (  # noqa: E402
    SPOOL_IN_MEMORY, KeyCleaner, count_keys, delete_keys)

VALUE = b'v' * 64
PATTERN = 'cache:*'
RUNBOOK = 'redis-cli -p {port} --scan --pattern "cache:*" | xargs redis-cli -p {port} DEL > /dev/null'


def playbook_max_keys():
    """cerniq_redis_cleanup_max_keys from the cerniq role's defaults (what daily_maintenance.yml passes)."""
    with open(os.path.join(REPO, 'roles', 'cerniq', 'defaults', 'main.yml')) as handle:
        return int(re.search(r'^cerniq_redis_cleanup_max_keys:\s*(\d+)', handle.read(), re.MULTILINE).group(1))


def resp(*parts):
    return b'*%d\r\n' % len(parts) + b''.join(b'$%d\r\n%s\r\n' % (len(part), part) for part in parts)


def write_load_file(path, families, count):
    """SET commands for ``count`` keys of each family, interleaved, as redis-cli --pipe reads them."""
    with open(path, 'wb') as handle:
        for start in range(0, count, 50000):
            handle.write(b''.join(resp(b'SET', family % number, VALUE)
                                  for number in range(start, min(count, start + 50000)) for family in families))


class Server(object):
    """The throwaway server, its data file and the measurements around each run."""

    def __init__(self, server, load_file, expected):
        self.server, self.load_file, self.expected = server, load_file, expected
        self.client = server.client(socket_timeout=600)

    def load(self):
        self.client.flushall()
        with open(self.load_file, 'rb') as handle:
            subprocess.run(['redis-cli', '-p', str(self.server.port), '--pipe'], stdin=handle,
                           stdout=subprocess.DEVNULL, check=True)
        assert self.client.dbsize() == self.expected, self.client.dbsize()
        time.sleep(1.0)  # let the server settle (incremental rehashing of the fresh tables)

    def cpu(self):
        info = self.client.info('cpu')
        return info['used_cpu_sys'] + info['used_cpu_user']

    def measured(self, run, remaining):
        """Wrap ``run`` (returns seconds or a Sample): PING probe, server CPU, longest call, data check."""
        def wrapper():
            self.client.config_set('slowlog-log-slower-than', 1000)
            self.client.slowlog_reset()
            with PingProbe(self.server.port) as probe:
                cpu = self.cpu()
                sample = run()
                cpu = self.cpu() - cpu
            slow = [entry['duration'] / 1000.0 for entry in self.client.slowlog_get(100000)
                    if (entry['command'] or b'').split(b' ')[0].upper() not in (b'SLOWLOG', b'CONFIG', b'INFO')]
            if not isinstance(sample, Sample):
                sample = Sample(sample)
            sample.extras.update({'PING worst ms': probe.worst_ms, 'PING p99 ms': probe.p99_ms, 'server CPU s': cpu,
                                  'longest call ms': max(slow) if slow else 0.0})
            if remaining is not None:
                assert self.client.dbsize() == remaining, (self.client.dbsize(), remaining)
            return sample
        return wrapper


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--keys', type=int, default=1000000, help='keys of each family (default 1M: 2M in all)')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--max-keys', type=int, default=playbook_max_keys(),
                        help='max_keys of the guarded runs (default: the daily maintenance playbook\'s)')
    parser.add_argument('--big', type=int, default=10000000, help='matching keys of the RSS run (0 = skip)')
    parser.add_argument('--phases', action='store_true', help='engine only, pass by pass (see above)')
    parser.add_argument('--autogroup-nice', type=int, help='raise the CPU share of the benchmark, its server and '
                        'the module processes (root; e.g. -10): a quiet machine approximated on a shared one')
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix='cerniq-bench-redis-')
    with RedisServer() as server:
        if args.autogroup_nice is not None:
            prioritize(server.proc.pid, args.autogroup_nice)
        print('redis-server %s; %s' % (server.client().info('server')['redis_version'], machine_line()))
        load_file = os.path.join(scratch, 'load.resp')
        write_load_file(load_file, [b'cache:company:%d', b'bull:silver:enrich:%d'], args.keys)
        data = Server(server, load_file, 2 * args.keys)
        if args.phases:
            phases(data, server, args)
        elif args.keys:
            compare(data, server, args)
        if args.big:
            big_run(server, scratch, args.big, args.autogroup_nice)
        data.client.close()
    for name in os.listdir(scratch):
        os.unlink(os.path.join(scratch, name))
    os.rmdir(scratch)


def compare(data, server, args):
    connection = dict(redis_host='127.0.0.1', redis_port=server.port)
    guarded = dict(connection, patterns=[PATTERN], max_keys=args.max_keys)
    # max_keys at the number of matching keys, below the database's size: the guard must count first.
    counting = dict(connection, patterns=[PATTERN], max_keys=args.keys)
    unguarded = dict(connection, patterns=[PATTERN])
    expected = args.keys

    def accept(result):
        if not result or result.get('failed') or result.get('deleted') != expected:
            raise RuntimeError('module run went wrong: %r' % (result,))

    bench = PairedBenchmark(runs=args.runs, autogroup_nice=args.autogroup_nice)
    bench.add('runbook: --scan | xargs DEL', data.measured(
        lambda: timed(lambda: subprocess.run(['bash', '-c', RUNBOOK.format(port=server.port)], check=True)),
        expected), prepare=data.load, baseline=True)
    modes = [('module, max_keys=%d (as daily_maintenance.yml)' % args.max_keys, guarded)]
    if args.max_keys >= 2 * args.keys:
        modes.append(('module, max_keys=%d (below DBSIZE: the guard counts)' % args.keys, counting))
    modes.append(('module, no max_keys', unguarded))
    for label, module_args in modes:
        method = bench.add_module(label, 'redis_keys', module_args, prepare=data.load, rss=True, accept=accept)
        method.run = data.measured(method.run, expected)
    for label, options in (('engine only, max_keys=%d' % args.max_keys, dict(max_keys=args.max_keys)),
                           ('engine only, no max_keys', {})):
        bench.add(label, data.measured(_engine(data.client, options, expected), expected), prepare=data.load)
    bench.add('idle server, 2 s (PING noise floor)', data.measured(lambda: timed(lambda: time.sleep(2)), None),
              ratio=False)
    print('data: %d cache:company:<n> keys to delete among %d (the others bull:silver:enrich:<n>), 64-byte values'
          % (args.keys, 2 * args.keys))
    bench.run()
    bench.print_report('delete %d of %d keys: paired with the runbook, medians of %d rounds' % (
        args.keys, 2 * args.keys, args.runs))
    for method in bench.methods:
        engine = [sample.result for sample in method.samples if isinstance(sample.result, dict)]
        if engine:
            print('  %s: guard=%s, scan_calls=%s, elapsed (engine) %s s' % (
                method.label, engine[0].get('guard'), engine[0].get('scan_calls'),
                ' / '.join('%.2f' % result['elapsed_seconds'] for result in engine)))


def phases(data, server, args):
    """Engine only: where the time goes, pass by pass, paired with the runbook."""
    client, expected = data.client, args.keys

    def timed_pass(function):
        started = time.perf_counter()
        function()
        return time.perf_counter() - started

    def unguarded():
        seconds = timed_pass(lambda: delete_keys(client, [PATTERN]))
        return Sample(seconds, **{'pass 1 s': seconds})

    def guard_before():
        """As the guard was: count, then SCAN + UNLINK the whole keyspace again (never above max_keys)."""
        cleaner = KeyCleaner(client, [PATTERN], max_keys=args.max_keys)
        result = cleaner._empty_result()
        first = timed_pass(lambda: count_keys(client, [PATTERN]))
        second = timed_pass(lambda: cleaner._scan(cleaner._nodes(), result, apply=True, budget=args.max_keys))
        assert result['deleted'] == expected, result
        return Sample(first + second, **{'pass 1 s': first, 'pass 2 s': second})

    def guard_now():
        cleaner = KeyCleaner(client, [PATTERN], max_keys=args.max_keys)
        result, nodes = cleaner._empty_result(), cleaner._nodes()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            first = timed_pass(lambda: cleaner._scan(nodes, result, apply=False, spool=spool, stop_above=args.max_keys))
            kept = spool.tell()
            second = timed_pass(lambda: cleaner._delete_kept(nodes, result, spool))
        assert result['deleted'] == expected, result
        return Sample(first + second, **{'pass 1 s': first, 'pass 2 s': second, 'kept MB': kept / 1e6})

    bench = PairedBenchmark(runs=args.runs, autogroup_nice=args.autogroup_nice)
    bench.add('runbook: --scan | xargs DEL', data.measured(
        lambda: timed(lambda: subprocess.run(['bash', '-c', RUNBOOK.format(port=server.port)], check=True)),
        expected), prepare=data.load, baseline=True)
    bench.add('engine only, no max_keys: SCAN + UNLINK', data.measured(unguarded, expected), prepare=data.load)
    bench.add('engine only, guard before: count, SCAN + UNLINK again', data.measured(guard_before, expected),
              prepare=data.load)
    bench.add('engine only, guard now: count keeping names, UNLINK them', data.measured(guard_now, expected),
              prepare=data.load)
    bench.run()
    bench.print_report('where the engine\'s time goes: %d of %d keys, medians of %d rounds' % (
        args.keys, 2 * args.keys, args.runs))


def _engine(client, options, expected):
    def run():
        started = time.perf_counter()
        result = delete_keys(client, [PATTERN], **options)
        seconds = time.perf_counter() - started
        assert result['deleted'] == expected, result
        return Sample(seconds, result)
    return run


def big_run(server, scratch, count, nice):
    """Peak RSS of the module process (through ansible-playbook) keeping ``count`` names aside."""
    client = server.client(socket_timeout=600)
    client.flushall()
    load_file = os.path.join(scratch, 'big.resp')
    write_load_file(load_file, [b'cache:company:%d'], count)
    with open(load_file, 'ab') as handle:
        handle.write(resp(b'SET', b'bull:silver:enrich:0', VALUE))
    with open(load_file, 'rb') as handle:
        subprocess.run(['redis-cli', '-p', str(server.port), '--pipe'], stdin=handle, stdout=subprocess.DEVNULL,
                       check=True)
    os.unlink(load_file)
    assert client.dbsize() == count + 1
    playbook = write_playbook(scratch, 'big', {'cerniq.ops.redis_keys': dict(
        redis_host='127.0.0.1', redis_port=server.port, patterns=[PATTERN], max_keys=count)})
    wall, result, proc, peak, _lived = time_playbook(playbook, process_marker='AnsiballZ_redis_keys', nice=nice)
    os.unlink(playbook)
    if not result or result.get('deleted') != count or client.dbsize() != 1:
        raise RuntimeError('big run went wrong: %s' % proc.stdout[-2000:])
    print('\n%d matching keys (+1 kept), module through ansible-playbook with max_keys=%d: guard=%s, '
          '%.1f s wall, engine %.1f s; module process peak RSS %.1f MB (%s)' % (
              count, count, result['guard'], wall, result['elapsed_seconds'], peak / 1e6, machine_line()))
    client.close()


if __name__ == '__main__':
    main()
