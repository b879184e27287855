"""Stand-in CERNIQ workers for the podman lab: real BullMQ workers (the Python port of
BullMQ, same Redis data model and Lua scripts as the Node.js library) with the
prom-client metrics of docs/metrics.md. They are not the CERNIQ application: a job
"processes" by sleeping a few milliseconds, and the enrichment workers call no API.

Every setting comes from the environment (systemd ``EnvironmentFile=``, the file that
runbook 2.2 edits, e.g. ``ANAF_CONCURRENCY=1``):

  REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, BULLMQ_PREFIX (bull)
  INGEST_CONCURRENCY (10), ANAF_CONCURRENCY (4), TERMENE_CONCURRENCY (4), SCORING_CONCURRENCY (2)
  LAB_JOB_MS (20)            how long a job "takes"; LAB_INGEST_JOB_MS (200) for the ingest
                             queues (a CSV row is slower: 10 workers drain ~50 jobs/s)
  LAB_TRAFFIC_PER_SECOND (2) jobs per second added to each queue by ``traffic``

Commands:
  work --group ingest|enrichment|scoring --metrics-port N
        run the group's workers; metrics on 0.0.0.0:N/metrics
  traffic
        add a steady trickle of jobs to every queue (the pipeline's producers)
  produce --queue Q --count N
        add N jobs at once (a large import); prints {"added": N}

Enrichment jobs check ``circuit:<source>:state`` first: when it is OPEN the attempt fails
fast (counted in cerniq_silver_enrichment_errors_total{error_type="circuit_open"}) and
BullMQ retries it later with backoff, which is what fills the delayed set in runbook 2.2.
"""

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bullmq import Queue, Worker

GROUPS = {
    'ingest': [('bronze:ingest:csv', 'INGEST_CONCURRENCY', 10, None),
               ('bronze:ingest:xlsx', 'INGEST_CONCURRENCY', 10, None)],
    'enrichment': [('silver:enrich:anaf-fiscal-status', 'ANAF_CONCURRENCY', 4, 'anaf'),
                   ('silver:enrich:termene', 'TERMENE_CONCURRENCY', 4, 'termene')],
    'scoring': [('silver:score:quality', 'SCORING_CONCURRENCY', 2, None)],
}
# Keep finished jobs for an hour so that "completed" only grows during a lab session.
JOB_OPTS = {'attempts': 3, 'backoff': {'type': 'exponential', 'delay': 30000},
            'removeOnComplete': {'age': 3600}, 'removeOnFail': {'age': 86400}}
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5)


def env_int(name, default):
    value = os.environ.get(name, '')
    return int(value) if value.strip() else default


def connection():
    opts = {'host': os.environ.get('REDIS_HOST', '127.0.0.1'), 'port': env_int('REDIS_PORT', 6379)}
    if os.environ.get('REDIS_PASSWORD'):
        opts['password'] = os.environ['REDIS_PASSWORD']
    return opts


def prefix():
    return os.environ.get('BULLMQ_PREFIX', 'bull')


class Metrics:
    """Counters and one histogram in the Prometheus text format (what prom-client serves)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.processed = {}
        self.errors = {}
        self.durations = {}

    def declare(self, queue, source=None):
        """Export the series at 0 from the start, as prom-client does for labelled counters."""
        with self.lock:
            for status in ('completed', 'failed'):
                self.processed.setdefault((queue, status), 0)
            if source:
                self.durations.setdefault(source, ([0] * len(DURATION_BUCKETS), 0.0, 0))
                self.errors.setdefault((source, 'circuit_open'), 0)

    def job_done(self, queue, status):
        with self.lock:
            self.processed[(queue, status)] = self.processed.get((queue, status), 0) + 1

    def enrichment(self, source, seconds, error_type=None):
        with self.lock:
            counts, total, count = self.durations.get(source, ([0] * len(DURATION_BUCKETS), 0.0, 0))
            counts = [c + (1 if seconds <= bound else 0) for c, bound in zip(counts, DURATION_BUCKETS)]
            self.durations[source] = (counts, total + seconds, count + 1)
            if error_type:
                self.errors[(source, error_type)] = self.errors.get((source, error_type), 0) + 1

    def render(self):
        lines = ['# HELP cerniq_worker_jobs_processed_total Jobs processed.',
                 '# TYPE cerniq_worker_jobs_processed_total counter']
        with self.lock:
            for (queue, status), value in sorted(self.processed.items()):
                lines.append('cerniq_worker_jobs_processed_total{queue="%s",status="%s"} %d' % (queue, status, value))
            if self.durations:
                lines += ['# HELP cerniq_silver_enrichment_errors_total Failed enrichment attempts.',
                          '# TYPE cerniq_silver_enrichment_errors_total counter']
                for (source, error_type), value in sorted(self.errors.items()):
                    lines.append('cerniq_silver_enrichment_errors_total{source="%s",error_type="%s"} %d'
                                 % (source, error_type, value))
                lines += ['# HELP cerniq_silver_enrichment_duration_seconds Enrichment attempts, failed ones included.',
                          '# TYPE cerniq_silver_enrichment_duration_seconds histogram']
                for source, (counts, total, count) in sorted(self.durations.items()):
                    for bound, value in zip(DURATION_BUCKETS, counts):
                        lines.append('cerniq_silver_enrichment_duration_seconds_bucket{source="%s",le="%s"} %d'
                                     % (source, bound, value))
                    lines.append('cerniq_silver_enrichment_duration_seconds_bucket{source="%s",le="+Inf"} %d'
                                 % (source, count))
                    lines.append('cerniq_silver_enrichment_duration_seconds_sum{source="%s"} %.6f' % (source, total))
                    lines.append('cerniq_silver_enrichment_duration_seconds_count{source="%s"} %d' % (source, count))
        return '\n'.join(lines) + '\n'


def serve_metrics(metrics, port):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path.split('?')[0] != '/metrics':
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header('Content-Type', 'text/plain; version=0.0.4')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(('0.0.0.0', port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class CircuitOpen(Exception):
    pass


def processor(metrics, state, source, job_seconds):
    """The job function of one queue (two parameters: BullMQ passes a third only when asked)."""
    async def process(job, token):
        started = time.monotonic()
        if source and (await state.get('circuit:%s:state' % source) or b'').upper() == b'OPEN':
            metrics.enrichment(source, time.monotonic() - started, 'circuit_open')
            raise CircuitOpen('circuit breaker for %s is OPEN' % source)
        await asyncio.sleep(job_seconds)
        if source:
            metrics.enrichment(source, time.monotonic() - started)
        return {'ok': True}
    return process


def counter(metrics, queue, status):
    return lambda *_event: metrics.job_done(queue, status)


async def work(args):
    import redis.asyncio as aioredis
    metrics = Metrics()
    serve_metrics(metrics, args.metrics_port)
    state = aioredis.Redis(**connection())
    job_seconds = (env_int('LAB_INGEST_JOB_MS', 200) if args.group == 'ingest' else env_int('LAB_JOB_MS', 20)) / 1000.0
    workers = []
    for queue, setting, default, source in GROUPS[args.group]:
        process = processor(metrics, state, source, job_seconds)
        worker = Worker(queue, process, {'connection': connection(), 'prefix': prefix(),
                                         'concurrency': env_int(setting, default)})
        for status in ('completed', 'failed'):
            worker.on(status, counter(metrics, queue, status))
        workers.append(worker)
        metrics.declare(queue, source)
    print(json.dumps({'group': args.group, 'queues': [w.name for w in workers],
                      'concurrency': {w.name: w.opts['concurrency'] for w in workers}}), flush=True)
    stop = asyncio.Event()
    await stop.wait()  # until systemd stops the unit (SIGTERM ends the process)


async def traffic(_args):
    per_second = env_int('LAB_TRAFFIC_PER_SECOND', 2)
    queues = {name: Queue(name, {'connection': connection(), 'prefix': prefix()})
              for group in GROUPS.values() for name, _s, _d, _src in group}
    print(json.dumps({'traffic_per_second': per_second, 'queues': sorted(queues)}), flush=True)
    number = 0
    while True:
        started = time.monotonic()
        for name, queue in queues.items():
            jobs = [{'name': 'lab', 'data': {'n': number + i}, 'opts': dict(JOB_OPTS)} for i in range(per_second)]
            await queue.addBulk(jobs)
        number += per_second
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def produce(args):
    queue = Queue(args.queue, {'connection': connection(), 'prefix': prefix()})
    added = 0
    while added < args.count:
        size = min(500, args.count - added)
        await queue.addBulk([{'name': 'import-row', 'data': {'row': added + i}, 'opts': dict(JOB_OPTS)}
                             for i in range(size)])
        added += size
    await queue.close()
    print(json.dumps({'added': added}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    sub = parser.add_subparsers(dest='command', required=True)
    work_parser = sub.add_parser('work')
    work_parser.add_argument('--group', choices=sorted(GROUPS), required=True)
    work_parser.add_argument('--metrics-port', type=int, required=True)
    sub.add_parser('traffic')
    produce_parser = sub.add_parser('produce')
    produce_parser.add_argument('--queue', required=True)
    produce_parser.add_argument('--count', type=int, required=True)
    args = parser.parse_args(argv)
    command = {'work': work, 'traffic': traffic, 'produce': produce}[args.command]
    asyncio.run(command(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
