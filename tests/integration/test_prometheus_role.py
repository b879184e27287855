"""The prometheus role's rules and configuration phases, against a real Prometheus.

The role runs on localhost with ``--tags prometheus_rules,prometheus_configure`` into a private
directory (the real ``template`` with the promtool ``validate`` and the real
``cerniq.ops.prometheus_rules`` the role uses on hosts). A throwaway
``/usr/bin/prometheus`` on a free loopback port then loads what the role wrote;
with it running, the role reloads it by SIGHUP to its pid file and verifies the
loaded rules. The service, the systemd reload and the handlers are left to the
Molecule scenario.
"""

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from cerniq_testkit.ansible_run import run_playbook
from cerniq_testkit.rendered import RULE_NAMES, default_rule_files
from cerniq_testkit.servers import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which('prometheus') is None or shutil.which('promtool') is None,
                       reason='prometheus/promtool (Debian prometheus) not installed'),
]

BAD_RULES = """groups:
  - name: site
    rules:
      - alert: Broken
        expr: rate(up[5m]
"""
DUPLICATE_RULES = """groups:
  - name: site
    rules:
      - alert: Twice
        expr: up == 0
      - alert: Twice
        expr: up == 0
"""


def _apply(tmp_path, extra_vars=None, tags='prometheus_rules,prometheus_configure'):
    role_vars = {
        'prometheus_config_dir': str(tmp_path / 'etc'),
        'prometheus_config_owner': pwd.getpwuid(os.getuid()).pw_name,
        'prometheus_config_group': grp.getgrgid(os.getgid()).gr_name,
        'prometheus_service_state': 'stopped',
        'prometheus_manage_args': False,
        'prometheus_promtool_path': shutil.which('promtool'),
        'prometheus_node_exporter_targets': [],
    }
    role_vars.update(extra_vars or {})
    (tmp_path / 'etc').mkdir(exist_ok=True)  # made by the Debian package on a host
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Apply the prometheus role',
        'hosts': 'localhost',
        'gather_facts': False,
        'roles': [{'role': 'cerniq.ops.prometheus', 'vars': role_vars}],
    }]))
    return run_playbook(str(playbook), extra_args=['--tags', tags])


def _rules_dir(tmp_path):
    return tmp_path / 'etc' / 'rules.d' / 'cerniq'


def _rule_files(tmp_path):
    """The rule files in the role's directory (not prometheus_rules' hidden manifest)."""
    return sorted(n for n in os.listdir(_rules_dir(tmp_path)) if not n.startswith('.'))


def _live(port, prom, tmp_path):
    """Role variables that make it reload the running test Prometheus (SIGHUP to its pid file)."""
    pid_file = tmp_path / 'prometheus.pid'
    pid_file.write_text('%d\n' % prom.proc.pid)
    return {'prometheus_web_listen_address': '127.0.0.1:%d' % port, 'prometheus_rules_reload': 'signal',
            'prometheus_rules_pid_file': str(pid_file)}


class Prometheus:
    """/usr/bin/prometheus on a free loopback port with the role's configuration."""

    def __init__(self, config, data_dir, port):
        self.port = port
        self.log = open(os.path.join(data_dir, 'prometheus.log'), 'wb')
        self.proc = subprocess.Popen(
            ['prometheus', '--config.file=%s' % config, '--storage.tsdb.path=%s' % data_dir,
             '--web.listen-address=127.0.0.1:%d' % port],
            stdout=self.log, stderr=subprocess.STDOUT, process_group=0)
        self.wait_for(lambda: self._get('/-/ready', raw=True) is not None, 'Prometheus ready')

    def _get(self, path, raw=False):
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d%s' % (self.port, path), timeout=5) as resp:
                body = resp.read().decode()
        except OSError:
            return None
        return body if raw else json.loads(body)

    def wait_for(self, predicate, what, timeout=60):
        """Poll until predicate() is true (a state to reach, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError('prometheus exited: %s' % open(self.log.name).read()[-2000:])
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError('%s not reached; log: %s' % (what, open(self.log.name).read()[-2000:]))

    def metric(self, name):
        for line in (self._get('/metrics', raw=True) or '').splitlines():
            if line.startswith(name + ' '):
                return line.split()[1]
        return None

    def query(self, expr):
        result = self._get('/api/v1/query?query=' + urllib.parse.quote(expr))
        return result['data']['result'] if result else []

    def rule_groups(self):
        result = self._get('/api/v1/rules')
        return sorted(g['name'] for g in result['data']['groups']) if result else []

    def reload(self):
        before = self.metric('prometheus_config_last_reload_success_timestamp_seconds')
        previous = self.metric('prometheus_config_last_reload_successful')
        self.proc.send_signal(signal.SIGHUP)
        # Processed when the success time moved or the status says failed.
        self.wait_for(lambda: self.metric('prometheus_config_last_reload_successful') == '0'
                      or self.metric('prometheus_config_last_reload_success_timestamp_seconds') != before,
                      'reload processed (was %s)' % previous)
        return self.metric('prometheus_config_last_reload_successful')

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def start_prometheus(tmp_path):
    started = []

    def start(port):
        data = tmp_path / 'data'
        data.mkdir(exist_ok=True)
        server = Prometheus(str(tmp_path / 'etc' / 'prometheus.yml'), str(data), port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_rules_deployed_as_rendered_stale_removed_idempotent(tmp_path):
    rules = _rules_dir(tmp_path)
    rules.mkdir(parents=True)
    (rules / 'cerniq-retired.yml').write_text('groups: []\n')
    result = _apply(tmp_path)
    assert result.returncode == 0, result.stdout
    assert _rule_files(tmp_path) == RULE_NAMES
    assert (rules / '.cerniq-rules-manifest.json').exists()
    for path in default_rule_files():
        with open(path) as handle:
            assert (rules / os.path.basename(path)).read_text() == handle.read(), path
    check = subprocess.run(['promtool', 'check', 'config', str(tmp_path / 'etc' / 'prometheus.yml')],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert check.returncode == 0, check.stdout
    again = _apply(tmp_path)
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout


def test_rules_rendered_from_the_settings_prometheus_templates_untouched(tmp_path):
    result = _apply(tmp_path, {'prometheus_runbook_base_url': 'https://wiki.example.org/cerniq-runbook',
                               'cerniq_alert_worker_down': {'for': '7m'}})
    assert result.returncode == 0, result.stdout
    text = (_rules_dir(tmp_path) / 'cerniq-queues.yml').read_text()
    assert 'https://wiki.example.org/cerniq-runbook#6-2-scaling-thresholds' in text
    assert 'runbooks.cerniq.app' not in text
    assert '{{ $labels.queue }}' in text and '{{ $value | humanize }}' in text
    worker_down = [rule for group in yaml.safe_load(text)['groups'] for rule in group['rules']
                   if rule.get('alert') == 'WorkerDown']
    assert [rule['for'] for rule in worker_down] == ['7m', '1h7m', '4h7m']


@pytest.mark.parametrize('content', [BAD_RULES, DUPLICATE_RULES], ids=['syntax', 'duplicate-lint'])
def test_bad_rule_file_never_replaces_live_rules(tmp_path, start_prometheus, content):
    port = free_port()
    assert _apply(tmp_path, {'prometheus_web_listen_address': '127.0.0.1:%d' % port}).returncode == 0
    prom = start_prometheus(port)
    groups = prom.wait_for(prom.rule_groups, 'rules loaded')
    assert 'cerniq-queues' in groups and 'cerniq-postgres' in groups

    site = tmp_path / 'site-rules.yml'
    site.write_text(content)
    before = _rule_files(tmp_path)
    reloaded_at = prom.metric('prometheus_config_last_reload_success_timestamp_seconds')
    result = _apply(tmp_path, dict(_live(port, prom, tmp_path), prometheus_extra_rule_files=[str(site)]))
    assert result.returncode != 0
    assert 'promtool check rules refused the rule files, nothing was changed: site-rules.yml: ' in result.stdout
    assert _rule_files(tmp_path) == before
    # Not reloaded, every rule still loaded.
    assert prom.metric('prometheus_config_last_reload_success_timestamp_seconds') == reloaded_at
    assert prom.rule_groups() == groups

    # Without the validate step the same file makes the reload fail (Prometheus
    # then keeps the old rules, but the next restart would not start at all).
    shutil.copy(str(site), str(_rules_dir(tmp_path) / 'site-rules.yml'))
    if content is BAD_RULES:
        assert prom.reload() == '0'
        assert prom.rule_groups() == groups


def test_site_rule_file_deployed_reloaded_and_removed(tmp_path, start_prometheus):
    """Through the role: a valid site file is written, Prometheus reloaded and the new group
    verified loaded; dropping it from the list removes it and Prometheus stops running it."""
    port = free_port()
    assert _apply(tmp_path, {'prometheus_web_listen_address': '127.0.0.1:%d' % port}).returncode == 0
    prom = start_prometheus(port)
    groups = prom.wait_for(prom.rule_groups, 'rules loaded')
    site = tmp_path / 'site-rules.yml'
    site.write_text('groups:\n  - name: site\n    rules:\n      - record: site:up:sum\n        expr: sum(up)\n')
    added = _apply(tmp_path, dict(_live(port, prom, tmp_path), prometheus_extra_rule_files=[str(site)]), tags='prometheus_rules')
    assert added.returncode == 0, added.stdout
    assert 'Deploy the rule files as one unit' in added.stdout and 'changed=1' in added.stdout
    assert prom.rule_groups() == sorted(groups + ['site'])
    again = _apply(tmp_path, dict(_live(port, prom, tmp_path), prometheus_extra_rule_files=[str(site)]), tags='prometheus_rules')
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout
    removed = _apply(tmp_path, _live(port, prom, tmp_path), tags='prometheus_rules')
    assert removed.returncode == 0, removed.stdout
    assert 'site-rules.yml' not in _rule_files(tmp_path)
    assert prom.rule_groups() == groups


def test_redis_keys_relabelled_into_bullmq_queue_jobs(tmp_path, start_prometheus, redis_server, redis_client):
    exporter_bin = shutil.which('prometheus-redis-exporter')
    if exporter_bin is None:
        pytest.skip('prometheus-redis-exporter not installed')
    keys = ['bull:bronze:ingest:csv:wait', 'bull:bronze:ingest:csv:delayed', 'bull:bronze:ingest:csv:active',
            'bull:silver:enrich:anaf-fiscal-status:prioritized', 'bull:silver:enrich:anaf-fiscal-status:meta']
    redis_client.lpush('bull:bronze:ingest:csv:wait', '1', '2', '3')
    redis_client.zadd('bull:bronze:ingest:csv:delayed', {'4': 1, '5': 2})
    redis_client.zadd('bull:silver:enrich:anaf-fiscal-status:prioritized', {'6': 1})
    redis_client.hset('bull:silver:enrich:anaf-fiscal-status:meta', 'paused', '0')
    exporter_port = free_port()
    exporter = subprocess.Popen(
        [exporter_bin, '-redis.addr', 'redis://127.0.0.1:%d' % redis_server.port,
         '-web.listen-address', '127.0.0.1:%d' % exporter_port, '-check-single-keys', ','.join(keys)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    try:
        port = free_port()
        result = _apply(tmp_path, {
            'prometheus_web_listen_address': '127.0.0.1:%d' % port,
            'prometheus_scrape_interval': '1s',
            'prometheus_evaluation_interval': '1s',
            'prometheus_scrape_timeout': '1s',
            'prometheus_alertmanager_targets': [],
            'prometheus_redis_exporter_targets': ['127.0.0.1:%d' % exporter_port],
        })
        assert result.returncode == 0, result.stdout
        prom = start_prometheus(port)
        # redis_exporter 1.45 exports 0 for a listed key that does not exist (empty list).
        series = prom.wait_for(lambda: len(prom.query('bullmq_queue_jobs')) == 4 and prom.query('bullmq_queue_jobs'),
                               'bullmq_queue_jobs scraped')
        got = {(s['metric']['queue'], s['metric']['state']): s['value'][1] for s in series}
        assert got == {('bronze:ingest:csv', 'wait'): '3', ('bronze:ingest:csv', 'delayed'): '2',
                       ('bronze:ingest:csv', 'active'): '0',
                       ('silver:enrich:anaf-fiscal-status', 'prioritized'): '1'}
        assert all('key' not in s['metric'] and s['metric']['job'] == 'redis' for s in series)
        # The meta hash is not a queue state: it stays redis_key_size.
        assert prom.query('redis_key_size{key="bull:silver:enrich:anaf-fiscal-status:meta"}')
        waiting = prom.wait_for(lambda: prom.query('queue:bullmq_jobs_waiting:sum'), 'recording rule evaluated')
        assert {s['metric']['queue']: s['value'][1] for s in waiting} == {
            'bronze:ingest:csv': '3', 'silver:enrich:anaf-fiscal-status': '1'}
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
