"""The logrotate role applied for real on this machine, into a private directory.

The Molecule scenario covers the role on a systemd host; this test checks the
behaviour that matters most cheaply: entries validated by logrotate before they
go live, idempotence, and removal.
"""

import subprocess

import yaml

from tests.support.ansible_run import run_playbook


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
