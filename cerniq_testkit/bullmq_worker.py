"""Real BullMQ producers and workers for the tests, run as subprocesses.

Run it with the interpreter of the BullMQ flavour under test:
``.venv/bin/python`` (bullmq 3.x, current data model) or ``.venv-bullmq5/bin/python``
(bullmq 2.x, the BullMQ 5 model with the ``paused`` list). It imports nothing from
the collection, so the engine under test never shares code with the workers.

Commands (all print one JSON line on stdout when done):
  produce  --count N [--paused] [--priority P] [--delay MS]   add N jobs (data {"n": i})
  pause / resume                                               Queue.pause() / Queue.resume()
  work     --record KEY [--until N] [--seconds S] [--sleep-ms MS] [--lock-ms MS]
           [--sleep-first N] [--stalled-ms MS] [--concurrency C] [--drain-delay S] [--fail]
      processes jobs; RPUSHes every job id to KEY when processing *starts* (so a job
      processed twice shows up twice); exits gracefully once KEY holds N entries or
      after S seconds. ``--fail`` makes every job throw (to fill the failed set).
"""

import argparse
import asyncio
import json
import sys
import time

import redis as redis_lib
from bullmq import Queue, Worker


def connection(args):
    if args.cluster:
        from redis.asyncio.cluster import RedisCluster
        return RedisCluster(host='127.0.0.1', port=args.port, decode_responses=True)
    opts = {'host': '127.0.0.1', 'port': args.port}
    if args.password:
        opts['password'] = args.password
    return opts


async def produce(args):
    queue = Queue(args.queue, {'connection': connection(args), 'prefix': args.prefix})
    opts = {}
    if args.priority:
        opts['priority'] = args.priority
    if args.delay:
        opts['delay'] = args.delay
    if args.paused:
        await queue.pause()
    jobs = [{'name': 'job', 'data': {'n': i}, 'opts': dict(opts)} for i in range(args.count)]
    added = 0
    if args.cluster:  # addBulk pipelines EVALSHA, which redis-py refuses on a cluster
        for job in jobs:
            await queue.add(job['name'], job['data'], job['opts'])
        jobs = []
        added = args.count
    for start in range(0, len(jobs), 500):
        await queue.addBulk(jobs[start:start + 500])
        added += len(jobs[start:start + 500])
    await queue.close()
    return {'added': added}


async def pause_resume(args, pause):
    queue = Queue(args.queue, {'connection': connection(args), 'prefix': args.prefix})
    if pause:
        await queue.pause()
    else:
        await queue.resume()
    await queue.close()
    return {'ok': True}


async def work(args):
    recorder = redis_lib.Redis(host='127.0.0.1', port=args.port, password=args.password or None)
    if args.cluster:
        from redis.cluster import RedisCluster
        recorder = RedisCluster(host='127.0.0.1', port=args.port)
    done = asyncio.Event()

    async def process(job, token):
        count = recorder.rpush(args.record, job.id)
        if args.until and count >= args.until:
            done.set()
        if args.sleep_ms and (not args.sleep_first or count <= args.sleep_first):
            await asyncio.sleep(args.sleep_ms / 1000.0)
        if args.fail:
            raise Exception('failing on purpose')
        return {'ok': job.id}

    worker = Worker(args.queue, process, {
        'connection': connection(args), 'prefix': args.prefix,
        'lockDuration': args.lock_ms, 'stalledInterval': args.stalled_ms,
        'concurrency': args.concurrency, 'drainDelay': args.drain_delay,
    })
    print(json.dumps({'started': True}), flush=True)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not done.is_set():
        if args.until and recorder.llen(args.record) >= args.until:
            break
        try:
            await asyncio.wait_for(done.wait(), 0.2)
        except asyncio.TimeoutError:
            pass
    # let the jobs running now finish
    await worker.close()
    return {'recorded': recorder.llen(args.record)}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('command', choices=['produce', 'work', 'pause', 'resume'])
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--password')
    parser.add_argument('--cluster', action='store_true')
    parser.add_argument('--prefix', default='bull')
    parser.add_argument('--queue', required=True)
    parser.add_argument('--count', type=int, default=0)
    parser.add_argument('--paused', action='store_true')
    parser.add_argument('--priority', type=int, default=0)
    parser.add_argument('--delay', type=int, default=0)
    parser.add_argument('--record', default='test:processed')
    parser.add_argument('--until', type=int, default=0)
    parser.add_argument('--seconds', type=float, default=60)
    parser.add_argument('--sleep-ms', type=int, default=0)
    parser.add_argument('--sleep-first', type=int, default=0, help='sleep only in the first N jobs')
    parser.add_argument('--lock-ms', type=int, default=30000)
    parser.add_argument('--stalled-ms', type=int, default=3600000)
    parser.add_argument('--concurrency', type=int, default=1)
    parser.add_argument('--drain-delay', type=int, default=5)
    parser.add_argument('--fail', action='store_true')
    args = parser.parse_args(argv)
    if args.command == 'produce':
        result = asyncio.run(produce(args))
    elif args.command in ('pause', 'resume'):
        result = asyncio.run(pause_resume(args, args.command == 'pause'))
    else:
        result = asyncio.run(work(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
