"""The capacity report (runbook 6.2) read from a real Prometheus running the shipped rules.

Prometheus loads every shipped rule file unchanged and scrapes a real postgres_exporter
(connections of the test PostgreSQL) and, for what cannot run here, one stand-in
endpoint in the exporters' exposition format: node_exporter's memory and filesystem
gauges (node_exporter is not installed on the test machine), the workers' job counter
(the CERNIQ Node.js workers), and ``bullmq_queue_jobs`` as the prometheus role's
relabelling of redis_exporter makes it (that relabelling has its own test in
test_prometheus_role.py). The report must show what the alert rules compute, per
queue and per host, with every row filled.
"""

import http.server
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
import yaml

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import capacity as cerniq_capacity, schema as cerniq_schema
from cerniq_testkit.ansible_run import REPO, run_module, run_playbook
from cerniq_testkit.monitoring import PrometheusServer
from cerniq_testkit.rendered import default_rule_files
from cerniq_testkit.servers import free_port

EXPORTER = shutil.which('prometheus-postgres-exporter')
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which('prometheus') is None or EXPORTER is None,
                       reason='prometheus and prometheus-postgres-exporter (Debian) not installed'),
]

RULES = default_rule_files()
QUEUES = ['bronze:ingest:csv', 'bronze:ingest:xlsx', 'silver:enrich:termene', 'silver:score:quality']
# queue -> (waiting jobs, jobs finished per second); termene: waiting, nothing finishes (stalled).
LOAD = {'bronze:ingest:csv': (6000, 5.0), 'silver:score:quality': (1500, 10.0), 'silver:enrich:termene': (200, 0.0)}
# The workers' counters started 15 minutes before the stand-in does (CLOCK, set by the stand_in fixture, not
# at import: with pytest-xdist a worker may import this file many minutes before it runs it, and a
# history that ended long ago leaves the rules' 10-minute rates a few live samples). Prometheus gets
# that past as history, so the 10-minute rate of the rules is the real throughput from the first evaluation.
CLOCK = {'started': time.time() - 900}


def _processed(queue, at):
    return 7 + LOAD[queue][1] * (at - CLOCK['started'])


def _history(target):
    lines = []
    for queue in LOAD:
        for step in range(0, 880, 15):
            lines.append('cerniq_worker_jobs_processed_total{instance="%s",job="cerniq-workers",queue="%s",'
                         'status="completed"} %.3f %d' % (target, queue, _processed(queue, CLOCK['started'] + step),
                                                          CLOCK['started'] + step))
    return '\n'.join(lines) + '\n# EOF\n'


def _exposition(path):
    lines = []
    if path == '/node':
        lines += ['node_memory_MemAvailable_bytes 1000000000', 'node_memory_MemTotal_bytes 10000000000']
        for mount, fstype, avail in (('/', 'ext4', 60), ('/data', 'xfs', 20), ('/run', 'tmpfs', 1)):
            labels = 'device="d%s",fstype="%s",mountpoint="%s"' % (mount.strip('/'), fstype, mount)
            lines += ['node_filesystem_avail_bytes{%s} %d' % (labels, avail * 2 ** 30),
                      'node_filesystem_size_bytes{%s} %d' % (labels, 100 * 2 ** 30)]
    elif path == '/redis':
        for queue, (waiting, _rate) in LOAD.items():
            lines += ['bullmq_queue_jobs{queue="%s",state="wait"} %d' % (queue, waiting - 100),
                      'bullmq_queue_jobs{queue="%s",state="prioritized"} 100' % queue,
                      'bullmq_queue_jobs{queue="%s",state="delayed"} 999' % queue]
    elif path == '/workers':
        for queue in LOAD:
            lines.append('cerniq_worker_jobs_processed_total{queue="%s",status="completed"} %.3f' % (
                queue, _processed(queue, time.time())))
    return '\n'.join(lines) + '\n'


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = _exposition(self.path).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain; version=0.0.4')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def stand_in():
    CLOCK['started'] = time.time() - 900
    server = http.server.ThreadingHTTPServer(('127.0.0.1', free_port()), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield '127.0.0.1:%d' % server.server_address[1]
    server.shutdown()


@pytest.fixture(scope='module')
def postgres_exporter(pg_server):
    params = pg_server.params(database='postgres', superuser=True)
    env = dict(os.environ, DATA_SOURCE_NAME='postgresql://%s:%s@127.0.0.1:%d/postgres?sslmode=disable' % (
        params['login_user'], params['login_password'], params['login_port']))
    port = free_port()
    proc = subprocess.Popen([EXPORTER, '--web.listen-address=127.0.0.1:%d' % port], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    yield '127.0.0.1:%d' % port
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope='module')
def prometheus(stand_in, postgres_exporter):
    groups = []
    for path in RULES:
        with open(path) as handle:
            groups += yaml.safe_load(handle)['groups']
    jobs = [dict(job_name=name, metrics_path=path, static_configs=[dict(targets=[stand_in])])
            for name, path in (('node', '/node'), ('redis', '/redis'), ('cerniq-workers', '/workers'))]
    jobs.append(dict(job_name='postgres', static_configs=[dict(targets=[postgres_exporter])]))
    with PrometheusServer(rules_text=yaml.safe_dump({'groups': groups}), scrape_configs=jobs,
                          history=_history(stand_in)) as server:
        server.wait_for(lambda: len(server.query('queue:bullmq_processing_latency:seconds')) == 2
                        and server.query(cerniq_capacity.STALLED_QUEUES)
                        and server.query('instance:pg_connections_used:ratio')
                        and server.query('instance_mountpoint:node_filesystem_used:ratio'),
                        'the recorded series', timeout=120)
        yield server


def _rows(markdown):
    """metric label -> where -> (value, status, action) of the Current load table."""
    table = {}
    for line in markdown.split('## Current load')[1].split('**Actions:**')[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if len(cells) == 7 and cells[0] not in ('metric', '---'):
            table.setdefault(cells[0], {})[cells[1]] = (cells[2], cells[5], cells[6])
    return table


def test_report_judges_per_queue_and_per_host_with_the_rules_series(
        prometheus, stand_in, postgres_exporter, pg_db, pg_conn, redis_params, redis_client, tmp_path):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    # bronze:ingest:xlsx has no exporter keys: its depth comes from the Redis read of the playbook.
    redis_client.lpush('bull:bronze:ingest:xlsx:wait', *[str(i) for i in range(1200)])
    redis_client.hset('bull:bronze:ingest:xlsx:meta', 'version', 'bullmq:5.58.0')
    result = run_playbook(REPO + '/playbooks/capacity_report.yml', extra_vars=dict(
        cerniq_postgres=pg_db, cerniq_redis=redis_params, cerniq_report_dir=str(tmp_path),
        cerniq_prometheus_url=prometheus.url, cerniq_queues=QUEUES))
    assert result.returncode == 0, result.stdout
    markdown = (tmp_path / 'capacity.md').read_text()
    rows = _rows(markdown)

    # Queue depth per queue (never summed), as queue:bullmq_jobs_waiting:sum counts it (wait + prioritized).
    depth = rows['Queue depth (waiting)']
    assert depth['bronze:ingest:csv'] == ('6000', 'CRITICAL', 'Add workers')
    assert depth['silver:score:quality'] == ('1500', 'WARNING', 'Add workers')
    assert depth['silver:enrich:termene'] == ('200', 'ok', '-')
    assert depth['bronze:ingest:xlsx'] == ('1200', 'WARNING', 'Add workers')

    # Latency = waiting / throughput, per queue, as BullMQQueueLatency: 6000 / 5 = 1200 s, 1500 / 10 = 150 s;
    # waiting jobs and no throughput: unbounded.
    latency = rows['Processing latency']
    csv_seconds = float(re.match(r'([\d.]+) s', latency['bronze:ingest:csv'][0]).group(1))
    assert 1100 < csv_seconds < 1300 and latency['bronze:ingest:csv'][1] == 'CRITICAL', latency
    quality_seconds = float(re.match(r'([\d.]+) s', latency['silver:score:quality'][0]).group(1))
    assert 135 < quality_seconds < 165 and latency['silver:score:quality'][1] == 'ok', latency
    assert latency['silver:enrich:termene'] == (cerniq_capacity.STALLED_NOTE, 'CRITICAL', 'Add workers')

    # Memory and the fullest real filesystem of the host node_exporter reports (tmpfs ignored), not the play host.
    assert rows['Memory usage'] == {stand_in: ('90 %', 'CRITICAL', 'Add RAM')}
    assert rows['Disk usage'] == {'%s (/data)' % stand_in: ('80 %', 'WARNING', 'Archive data')}

    # Connections over max_connections of the instance postgres_exporter watches.
    connections = rows['Database connections']
    assert list(connections) == [postgres_exporter]
    value, status, _action = connections[postgres_exporter]
    ratio = float(prometheus.query('instance:pg_connections_used:ratio')[0]['value'][1])
    assert abs(float(value.split()[0]) - 100 * ratio) < 3 and status == 'ok'

    # Every row filled but one: nothing reports the throughput of a queue without exporter keys or workers.
    assert latency['bronze:ingest:xlsx'] == ('not measured', 'unknown', '-')
    unfilled = [(metric, where) for metric, by_where in rows.items() for where, (value, status, _a) in by_where.items()
                if status == 'unknown' or value == 'n/a']
    assert unfilled == [('Processing latency', 'bronze:ingest:xlsx')], unfilled
    assert 'Measured from: ' in markdown and prometheus.url in markdown
    assert (tmp_path / 'capacity.html').read_text().count('<tr>') == 1 + sum(len(v) for v in rows.values())


def test_an_unreachable_prometheus_is_said_and_the_direct_reads_stay(
        pg_db, pg_conn, redis_params, redis_client, tmp_path):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    redis_client.lpush('bull:bronze:ingest:csv:wait', *[str(i) for i in range(1500)])
    redis_client.hset('bull:bronze:ingest:csv:meta', 'version', 'bullmq:5.58.0')
    dead = 'http://127.0.0.1:%d' % free_port()
    result = run_module('capacity_info', dict(pg_db, prometheus_url=dead, queues=QUEUES[:2],
                                              measurements=dict(queue_depth={'bronze:ingest:csv': 1500})))
    assert not result.failed, result
    assert any('Prometheus %s FAILED' % dead in line for line in result['sources'])
    verdicts = {(v['metric'], v['object']): v for v in result['verdicts']}
    assert verdicts[('queue_depth', 'bronze:ingest:csv')]['status'] == 'warning'
    assert verdicts[('queue_depth', 'bronze:ingest:xlsx')]['status'] == 'unknown'
    assert verdicts[('memory', None)]['status'] == 'unknown'  # never the play host's memory
    assert result['connections']['percent'] == round(100.0 * result['connections']['used']
                                                     / result['connections']['max'], 1)
