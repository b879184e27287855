"""The PostgreSQL metrics the rules use, read from a real postgres_exporter 0.11.

docs/metrics.md defines a query file for the slow-query alert (0.11 has no
stat_statements collector). This test runs Debian's prometheus-postgres-exporter
with exactly that query file against a throwaway PostgreSQL and checks that
every PostgreSQL metric name and label the rule files rely on is exposed.
"""

import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from cerniq_testkit.ansible_run import REPO
from cerniq_testkit.servers import free_port

EXPORTER = shutil.which('prometheus-postgres-exporter')
pytestmark = pytest.mark.skipif(EXPORTER is None, reason='prometheus-postgres-exporter not installed')


def _query_file_from_docs():
    with open(os.path.join(REPO, 'docs', 'metrics.md')) as handle:
        text = handle.read()
    match = re.search(r'```yaml\n(pg_stat_statements:\n.*?)```', text, re.S)
    assert match, 'docs/metrics.md lost its pg_stat_statements query file'
    return match.group(1)


def _scrape(port):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=10) as resp:
        return resp.read().decode()


def test_rule_metrics_exposed_by_postgres_exporter(pg_server, tmp_path):
    pg_server.psql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements')
    # The server is shared by the whole session: hundreds of one-off statements of earlier tests
    # (CREATE DATABASE test_..., each its own entry) would fill the query file's top 100 by time
    # and push the three calls below out of it. Start from empty statistics.
    pg_server.psql('SELECT pg_stat_statements_reset()')
    for _unused in range(3):
        pg_server.psql('SELECT pg_sleep(0.05)')
    queries = tmp_path / 'queries.yaml'
    queries.write_text(_query_file_from_docs())
    params = pg_server.params(database='postgres', superuser=True)
    env = dict(os.environ, DATA_SOURCE_NAME='postgresql://%s:%s@127.0.0.1:%d/postgres?sslmode=disable' % (
        params['login_user'], params['login_password'], params['login_port']))
    port = free_port()
    proc = subprocess.Popen([EXPORTER, '--web.listen-address=127.0.0.1:%d' % port,
                             '--extend.query-path=%s' % queries],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            try:
                text = _scrape(port)
                if 'pg_stat_statements_calls_total{' in text:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, 'no pg_stat_statements metrics'
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert re.search(r"^pg_up 1$", text, re.M), text[:3000]
    assert re.search(r'^pg_settings_max_connections\S* \d', text, re.M)
    activity = re.findall(r'^pg_stat_activity_count\{([^}]*)\}', text, re.M)
    assert activity and all('datname=' in labels and 'state=' in labels for labels in activity)
    for name in ('pg_stat_statements_calls_total', 'pg_stat_statements_seconds_total'):
        series = re.findall(r'^%s\{([^}]*)\} (\S+)$' % name, text, re.M)
        assert series, name
        assert all(all(key in labels for key in ('datname=', 'queryid=', 'user=')) for labels, _v in series)
    sleeps = re.findall(r'^pg_stat_statements_calls_total\{[^}]*\} (\S+)$', text, re.M)
    assert any(float(v) >= 3 for v in sleeps)
    assert '# TYPE pg_stat_statements_seconds_total counter' in text
