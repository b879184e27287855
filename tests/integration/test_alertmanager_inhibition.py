"""The alertmanager role's inhibition rules, checked by a real Alertmanager.

amtool cannot evaluate inhibition offline, so the configuration rendered by the
role (``--tags alertmanager_configure`` into a temp dir) is loaded by a throwaway
``prometheus-alertmanager`` on a free loopback port; alerts are posted through
its API and the API's ``status.inhibitedBy`` tells which ones are muted.
"""

import datetime
import grp
import json
import os
import pwd
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml

from cerniq_testkit.ansible_run import run_playbook
from cerniq_testkit.servers import free_port

BINARY = shutil.which('prometheus-alertmanager') or shutil.which('alertmanager')
pytestmark = pytest.mark.skipif(BINARY is None or shutil.which('amtool') is None,
                                reason='prometheus-alertmanager not installed')


def _render(tmp_path):
    config = tmp_path / 'alertmanager.yml'
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Render the Alertmanager configuration',
        'hosts': 'localhost',
        'gather_facts': False,
        'roles': [{'role': 'cerniq.ops.alertmanager', 'vars': {
            'alertmanager_config_file': str(config),
            'alertmanager_config_owner': pwd.getpwuid(os.getuid()).pw_name,
            'alertmanager_config_group': grp.getgrgid(os.getgid()).gr_name,
            'alertmanager_manage_args': False,
            'alertmanager_service_state': 'stopped',
            'alertmanager_amtool_path': shutil.which('amtool'),
        }}],
    }]))
    result = run_playbook(str(playbook), extra_args=['--tags', 'alertmanager_configure'])
    assert result.returncode == 0, result.stdout
    return config


def _api(port, path, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request('http://127.0.0.1:%d/api/v2%s' % (port, path), data=data,
                                     headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=5) as resp:
        body = resp.read().decode()
    return json.loads(body) if body else None


@pytest.fixture(scope='module')
def alertmanager(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('alertmanager-live')
    config = _render(tmp_path)
    port = free_port()
    log = open(str(tmp_path / 'alertmanager.log'), 'wb')
    proc = subprocess.Popen([BINARY, '--config.file=%s' % config, '--storage.path=%s' % (tmp_path / 'data'),
                             '--web.listen-address=127.0.0.1:%d' % port, '--cluster.listen-address='],
                            stdout=log, stderr=subprocess.STDOUT, process_group=0)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, open(log.name).read()[-2000:]
        try:
            _api(port, '/status')
            break
        except OSError:
            assert time.monotonic() < deadline, open(log.name).read()[-2000:]
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


ALERTS = [
    # (name, labels) — alertname added from name
    ('pg-sev1', {'alertname': 'PostgresDown', 'severity': 'sev1', 'escalation': 'oncall', 'service': 'postgres',
                 'instance': 'db1:9187'}),
    ('pg-sev3', {'alertname': 'PostgresConnections', 'severity': 'sev3', 'service': 'postgres', 'instance': 'db1:9187'}),
    ('pg-sev4', {'alertname': 'PostgresConnections', 'severity': 'sev4', 'service': 'postgres', 'instance': 'db1:9187'}),
    ('q-sev2', {'alertname': 'BullMQQueueDepth', 'severity': 'sev2', 'escalation': 'oncall', 'service': 'queue',
                'queue': 'bronze:ingest:csv'}),
    ('q-sev3', {'alertname': 'BullMQQueueDepth', 'severity': 'sev3', 'service': 'queue', 'queue': 'bronze:ingest:csv'}),
    ('q-other-sev3', {'alertname': 'BullMQQueueDepth', 'severity': 'sev3', 'service': 'queue', 'queue': 'silver:enrich'}),
    ('disk-sev3', {'alertname': 'NodeDiskUsage', 'severity': 'sev3', 'service': 'node', 'instance': 'n1:9100',
                   'mountpoint': '/var/lib/postgresql'}),
    ('disk-sev4', {'alertname': 'NodeDiskUsage', 'severity': 'sev4', 'service': 'node', 'instance': 'n1:9100',
                   'mountpoint': '/var/lib/postgresql'}),
    ('disk-root-sev4', {'alertname': 'NodeDiskUsage', 'severity': 'sev4', 'service': 'node', 'instance': 'n1:9100',
                        'mountpoint': '/'}),
    ('mem-sev4', {'alertname': 'NodeMemoryUsage', 'severity': 'sev4', 'service': 'node', 'instance': 'n1:9100'}),
]
EXPECTED_INHIBITED = {'pg-sev3', 'pg-sev4', 'q-sev3', 'disk-sev4'}


def test_lower_severities_inhibited(alertmanager):
    now = datetime.datetime.now(datetime.timezone.utc)
    ends = (now + datetime.timedelta(hours=1)).isoformat()
    _api(alertmanager, '/alerts', [{'labels': dict(labels, case=case), 'startsAt': now.isoformat(), 'endsAt': ends}
                                   for case, labels in ALERTS])
    deadline = time.monotonic() + 60
    while True:
        got = {a['labels']['case']: a['status'] for a in _api(alertmanager, '/alerts')}
        if len(got) == len(ALERTS):
            break
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    inhibited = {case for case, status in got.items() if status['inhibitedBy']}
    assert inhibited == EXPECTED_INHIBITED, got
    for case in EXPECTED_INHIBITED:
        assert got[case]['state'] == 'suppressed'
