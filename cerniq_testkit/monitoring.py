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

from cerniq_testkit.servers import _wait_for_port, free_port


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
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, process_group=0)
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

    def __init__(self, config_text=None, cluster_port=None, peers=()):
        super().__init__()
        self.config_text = config_text or (
            'route:\n  receiver: default\n  group_wait: 1s\n  group_interval: 1s\n'
            'receivers:\n  - name: default\n')
        # Cluster member: gossip on 127.0.0.1:cluster_port with the given peers (host:port).
        self.cluster_port = cluster_port
        self.peers = list(peers)

    def start(self):
        self.base = tempfile.mkdtemp(prefix='cerniq-alertmanager-')
        config = os.path.join(self.base, 'alertmanager.yml')
        with open(config, 'w') as handle:
            handle.write(self.config_text)
        self.port = free_port()
        if self.cluster_port:
            cluster = ['--cluster.listen-address=127.0.0.1:%d' % self.cluster_port,
                       '--cluster.advertise-address=127.0.0.1:%d' % self.cluster_port]
            cluster += ['--cluster.peer=' + peer for peer in self.peers]
        else:
            cluster = ['--cluster.listen-address=']
        self._start([_binary('prometheus-alertmanager', 'alertmanager'), '--config.file=' + config,
                     '--storage.path=' + os.path.join(self.base, 'data'),
                     '--web.listen-address=127.0.0.1:%d' % self.port] + cluster)
        self.wait_for(lambda: self.get_json('/api/v2/status'), 'API')
        return self

    def alerts(self):
        return self.get_json('/api/v2/alerts')

    def silences(self):
        return self.get_json('/api/v2/silences')


class AlertmanagerCluster:
    """Alertmanagers gossiping with each other on loopback (--cluster.listen-address/--cluster.peer)."""

    def __init__(self, size=2, config_text=None):
        ports = [free_port() for _member in range(size)]
        self.members = [AlertmanagerServer(config_text, port, ['127.0.0.1:%d' % p for p in ports if p != port])
                        for port in ports]

    @property
    def urls(self):
        return [member.url for member in self.members]

    def start(self):
        try:
            for member in self.members:
                member.start()
            for member in self.members:
                member.wait_for(lambda m=member: len(m.get_json('/api/v2/status')['cluster']['peers'])
                                == len(self.members), 'every cluster peer joined')
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        for member in self.members:
            member.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class PrometheusServer(_Server):
    name = 'prometheus'

    def __init__(self, rules_text=None, alertmanager_url=None, evaluation_interval='1s', scrape_configs=None,
                 rule_files=(), extra_args=(), user=None, history=None):
        super().__init__()
        self.rules_text = rules_text
        self.alertmanager_url = alertmanager_url
        self.evaluation_interval = evaluation_interval
        self.scrape_configs = scrape_configs or []
        self.rule_files = list(rule_files)  # further rule_files globs (absolute)
        self.extra_args = list(extra_args)  # e.g. --web.enable-lifecycle
        self.user = user  # run as this user (setpriv), as Debian's unit runs it as prometheus
        # OpenMetrics text (ending in "# EOF") loaded as past samples before the start
        # (promtool tsdb create-blocks-from openmetrics), so rates over long windows are
        # right from the first evaluation.
        self.history = history

    def start(self):
        self.base = tempfile.mkdtemp(prefix='cerniq-prometheus-')
        self.port = free_port()
        config = {'global': {'scrape_interval': '1s', 'evaluation_interval': self.evaluation_interval},
                  'scrape_configs': self.scrape_configs}
        config['rule_files'] = list(self.rule_files)
        if self.rules_text:
            rules = os.path.join(self.base, 'rules.yml')
            with open(rules, 'w') as handle:
                handle.write(self.rules_text)
            config['rule_files'].append(rules)
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
        command = [_binary('prometheus'), '--config.file=' + path, '--storage.tsdb.path=' + os.path.join(self.base, 'data'),
                   '--web.listen-address=127.0.0.1:%d' % self.port]
        if self.alertmanager_url and not any(arg.startswith('--rules.alert.resend-delay') for arg in self.extra_args):
            # Prometheus drops the notifications it sends before its discovery has handed the notifier
            # the Alertmanager (updates come at most every 5 s) and resends firing alerts only after
            # this delay, 1 minute by default: a test waiting 60 s for delivery then failed under load.
            command.append('--rules.alert.resend-delay=1s')
        command += self.extra_args
        if self.user:
            import pwd
            account = pwd.getpwnam(self.user)
            os.makedirs(os.path.join(self.base, 'data'), exist_ok=True)
            for directory in (self.base, os.path.join(self.base, 'data')):
                os.chown(directory, account.pw_uid, account.pw_gid)
            command = ['setpriv', '--reuid=%d' % account.pw_uid, '--regid=%d' % account.pw_gid, '--clear-groups',
                       '--'] + command
        self._start(command)
        self.wait_for(self._ready, 'readiness')
        return self

    def _ready(self):
        with urllib.request.urlopen(self.url + '/-/ready', timeout=2) as response:
            return response.status == 200

    def query(self, expr):
        from urllib.parse import quote
        data = self.get_json('/api/v1/query?query=' + quote(expr))
        return data['data']['result']
