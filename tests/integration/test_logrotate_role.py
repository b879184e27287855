"""The logrotate role applied for real on this machine, into a private directory.

The Molecule scenario covers the role on a systemd host; this test checks the
behaviour that matters most cheaply: entries validated by logrotate before they
go live, idempotence, and removal.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from cerniq_testkit.ansible_run import run_playbook


def _play(tmp_path, entries):
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Apply logrotate',
        'hosts': 'localhost',
        'gather_facts': False,
        'roles': [{'role': 'cerniq.ops.logrotate', 'vars': {
            'logrotate_install': False,
            'logrotate_conf_dir': str(tmp_path / 'logrotate.d'),
            'logrotate_maintenance_owner': 'root',
            'logrotate_entries': entries,
        }}],
    }]))
    (tmp_path / 'logrotate.d').mkdir(exist_ok=True)
    return run_playbook(str(playbook))


ENTRIES = [
    {'name': 'cerniq-workers', 'paths': ['/var/log/cerniq/workers/*.log'], 'copytruncate': True,
     'create': '0640 root adm'},
    {'name': 'cerniq-api', 'paths': ['/var/log/cerniq/api/*.log'], 'rotate': 30,
     'postrotate': 'systemctl kill -s HUP cerniq-api.service || true'},
]


def test_entries_rendered_valid_and_idempotent(tmp_path):
    first = _play(tmp_path, ENTRIES)
    assert first.returncode == 0, first.stdout
    workers = (tmp_path / 'logrotate.d' / 'cerniq-workers').read_text()
    assert 'copytruncate' in workers and 'create' not in workers.split('{', 1)[1]
    api = (tmp_path / 'logrotate.d' / 'cerniq-api').read_text()
    assert 'rotate 30' in api and 'postrotate' in api and 'endscript' in api
    for name in ('cerniq-workers', 'cerniq-api'):
        check = subprocess.run(['logrotate', '-d', str(tmp_path / 'logrotate.d' / name)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        assert check.returncode == 0, check.stdout
    second = _play(tmp_path, ENTRIES)
    assert 'changed=0' in second.stdout, second.stdout


def test_invalid_entry_never_replaces_the_live_file(tmp_path):
    assert _play(tmp_path, ENTRIES).returncode == 0
    before = (tmp_path / 'logrotate.d' / 'cerniq-api').read_text()
    broken = [dict(ENTRIES[1], maxsize='lots')]
    result = _play(tmp_path, broken)
    assert result.returncode != 0
    assert 'failed to validate' in result.stdout
    assert (tmp_path / 'logrotate.d' / 'cerniq-api').read_text() == before


def test_absent_entry_is_removed_and_unnamed_entry_refused(tmp_path):
    assert _play(tmp_path, ENTRIES).returncode == 0
    result = _play(tmp_path, [{'name': 'cerniq-api', 'state': 'absent'}])
    assert result.returncode == 0, result.stdout
    assert not (tmp_path / 'logrotate.d' / 'cerniq-api').exists()
    assert (tmp_path / 'logrotate.d' / 'cerniq-workers').exists()
    refused = _play(tmp_path, [{'name': 'bad name/..', 'paths': ['/x']}])
    assert refused.returncode != 0


def _host_play(tmp_path, group, role_vars=None):
    """The role with its defaults on localhost as a member of ``group`` (the CERNIQ inventory's groups)."""
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(yaml.safe_dump({'all': {'children': {group: {'hosts': {'localhost': {
        'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}}}}}))
    variables = {
        'logrotate_install': False,
        'logrotate_conf_dir': str(tmp_path / 'logrotate.d'),
        'logrotate_maintenance_owner': 'root',
        'logrotate_docker_daemon_json': str(tmp_path / 'docker' / 'daemon.json'),
        'logrotate_podman_conf': str(tmp_path / 'containers.conf.d' / 'cerniq-logs.conf'),
    }
    variables.update(role_vars or {})
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Apply logrotate', 'hosts': 'all', 'gather_facts': False,
        'roles': [{'role': 'cerniq.ops.logrotate', 'vars': variables}],
    }]))
    (tmp_path / 'logrotate.d').mkdir(exist_ok=True)
    return run_playbook(str(playbook), inventory=str(inventory))


def test_worker_host_rotates_worker_logs_and_limits_container_logs(tmp_path):
    """Runbook 3.1 step 5 on the worker hosts: file logs and the runtimes' own logs are bounded."""
    (tmp_path / 'docker').mkdir()
    (tmp_path / 'docker' / 'daemon.json').write_text(json.dumps(
        {'data-root': '/srv/docker', 'log-opts': {'labels': 'app'}}))
    first = _host_play(tmp_path, 'cerniq_workers', {'logrotate_container_runtimes': ['docker', 'podman']})
    assert first.returncode == 0, first.stdout
    assert sorted(os.listdir(tmp_path / 'logrotate.d')) == ['cerniq-workers']
    check = subprocess.run(['logrotate', '-d', str(tmp_path / 'logrotate.d' / 'cerniq-workers')],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert check.returncode == 0, check.stdout
    assert '/var/log/cerniq/workers/*.log' in check.stdout
    daemon = json.loads((tmp_path / 'docker' / 'daemon.json').read_text())
    assert daemon == {'data-root': '/srv/docker',
                      'log-opts': {'labels': 'app', 'max-size': '50m', 'max-file': '5'}}
    podman_conf = (tmp_path / 'containers.conf.d' / 'cerniq-logs.conf').read_text()
    assert '[containers]' in podman_conf and 'log_size_max = 52428800' in podman_conf
    again = _host_play(tmp_path, 'cerniq_workers', {'logrotate_container_runtimes': ['docker', 'podman']})
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout


@pytest.mark.skipif(shutil.which('podman') is None, reason='podman not installed')
def test_auto_finds_podman_and_podman_accepts_the_drop_in(tmp_path):
    result = _host_play(tmp_path, 'cerniq_workers')
    assert result.returncode == 0, result.stdout
    assert (tmp_path / 'containers.conf.d' / 'cerniq-logs.conf').exists()
    # The check the role ran (podman reading the file alone), and a broken value never goes live.
    broken = _host_play(tmp_path, 'cerniq_workers', {'logrotate_podman_log_size_max': '1K'})
    assert broken.returncode != 0 and 'failed to validate' in broken.stdout, broken.stdout
    assert 'log_size_max = 52428800' in (tmp_path / 'containers.conf.d' / 'cerniq-logs.conf').read_text()


def test_a_log_driver_the_site_chose_is_left_alone(tmp_path):
    (tmp_path / 'docker').mkdir()
    chosen = json.dumps({'log-driver': 'journald'})
    (tmp_path / 'docker' / 'daemon.json').write_text(chosen)
    result = _host_play(tmp_path, 'cerniq_workers', {'logrotate_container_runtimes': ['docker']})
    assert result.returncode == 0, result.stdout
    assert 'sets log-driver journald: not json-file, left' in result.stdout
    assert (tmp_path / 'docker' / 'daemon.json').read_text() == chosen


def test_database_host_gets_the_maintenance_logs_only(tmp_path):
    result = _host_play(tmp_path, 'cerniq_database')
    assert result.returncode == 0, result.stdout
    assert sorted(os.listdir(tmp_path / 'logrotate.d')) == ['cerniq-maintenance']
    assert not (tmp_path / 'docker').exists() and not (tmp_path / 'containers.conf.d').exists()
