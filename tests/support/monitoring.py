"""Throwaway Prometheus and Alertmanager (Debian's binaries) on free loopback ports.

Used by tests and the local demo; each runs in its own temp directory and is
removed afterwards.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from tests.support.servers import _wait_for_port, free_port


def _binary(*names):
    for name in names:
        path = shutil.which(name) or (os.path.exists('/usr/bin/' + name) and '/usr/bin/' + name)
        if path:
            return path
    raise RuntimeError('%s not found: apt-get install prometheus prometheus-alertmanager' % names[0])


class _Server:
    name = 'server'

    def __init__(self):
        self.base = None
        self.port = None
        self.proc = None

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def get_json(self, path):
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read().decode())

    def wait_for(self, predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited: %s' % (self.name, self.log_tail()))
            try:
                value = predicate()
                if value:
                    return value
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        raise RuntimeError('%s: timed out waiting for %s' % (self.name, what))

    def log_tail(self):
        try:
            with open(os.path.join(self.base, 'server.log')) as handle:
                return handle.read()[-2000:]
        except OSError:
            return ''

    def _start(self, args):
        log = open(os.path.join(self.base, 'server.log'), 'ab')
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, 30, self.proc, self.name)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class AlertmanagerServer(_Server):
    name = 'alertmanager'

    def __init__(self, config_text=None):
        super().__init__()
        self.config_text = config_text or (
            'route:\n  receiver: default\n  group_wait: 1s\n  group_interval: 1s\n'
            'receivers:\n  - name: default\n')

    def start(self):
        self.base = tempfile.mkdtemp(prefix='cerniq-alertmanager-')
        config = os.path.join(self.base, 'alertmanager.yml')
        with open(config, 'w') as handle:
            handle.write(self.config_text)
        self.port = free_port()
        self._start([_binary('prometheus-alertmanager', 'alertmanager'), '--config.file=' + config,
                     '--storage.path=' + os.path.join(self.base, 'data'),
                     '--web.listen-address=127.0.0.1:%d' % self.port, '--cluster.listen-address='])
        self.wait_for(lambda: self.get_json('/api/v2/status'), 'API')
        return self

    def alerts(self):
        return self.get_json('/api/v2/alerts')


class PrometheusServer(_Server):
    name = 'prometheus'

    def __init__(self, rules_text=None, alertmanager_url=None, evaluation_interval='1s', scrape_configs=None,
                 history=None):
        super().__init__()
        self.rules_text = rules_text
        self.alertmanager_url = alertmanager_url
        self.evaluation_interval = evaluation_interval
        self.scrape_configs = scrape_configs or []
        # OpenMetrics text (ending in "# EOF") loaded as past samples before the start
        # (promtool tsdb create-blocks-from openmetrics), so rates over long windows are
        # right from the first evaluation.
        self.history = history

    def start(self):
        self.base = tempfile.mkdtemp(prefix='cerniq-prometheus-')
        self.port = free_port()
        config = {'global': {'scrape_interval': '1s', 'evaluation_interval': self.evaluation_interval},
                  'scrape_configs': self.scrape_configs}
        if self.rules_text:
            rules = os.path.join(self.base, 'rules.yml')
            with open(rules, 'w') as handle:
                handle.write(self.rules_text)
            config['rule_files'] = [rules]
        if self.alertmanager_url:
            target = self.alertmanager_url.split('://', 1)[-1].rstrip('/')
            config['alerting'] = {'alertmanagers': [{'static_configs': [{'targets': [target]}]}]}
        path = os.path.join(self.base, 'prometheus.yml')
        with open(path, 'w') as handle:
            json.dump(config, handle)  # JSON is YAML
        if self.history:
            history = os.path.join(self.base, 'history.om')
            with open(history, 'w') as handle:
                handle.write(self.history)
            subprocess.run([_binary('promtool'), 'tsdb', 'create-blocks-from', 'openmetrics', history,
                            os.path.join(self.base, 'data')], stdout=subprocess.DEVNULL, check=True)
        self._start([_binary('prometheus'), '--config.file=' + path,
                     '--storage.tsdb.path=' + os.path.join(self.base, 'data'),
                     '--web.listen-address=127.0.0.1:%d' % self.port])
        self.wait_for(self._ready, 'readiness')
        return self

    def _ready(self):
        with urllib.request.urlopen(self.url + '/-/ready', timeout=2) as response:
            return response.status == 200

    def query(self, expr):
        from urllib.parse import quote
        data = self.get_json('/api/v1/query?query=' + quote(expr))
        return data['data']['result']
