"""The collection as a site installs it, and the example AWX project (docs/examples/awx-project).

Every shipped playbook resolves by its FQCN from the installed tarball (subdirectories as dots:
playbooks/runbook/sla_breach.yml is cerniq.ops.runbook.sla_breach); the example project has one
thin wrapper per shipped playbook; the tarball carries the license.
"""

import glob
import os
import subprocess
import tarfile

import yaml

from tests.runner.awx_job import EXAMPLE_PROJECT, REPO, VENV_BIN

NOT_PLAYBOOKS = ('tasks', 'templates', 'vars')


def shipped_playbooks():
    """FQCN of every playbook under playbooks/ (task files, templates and vars files are not playbooks)."""
    names = []
    for path in glob.glob(os.path.join(REPO, 'playbooks', '**', '*.yml'), recursive=True):
        relative = os.path.relpath(path, os.path.join(REPO, 'playbooks'))
        parts = relative[:-len('.yml')].split(os.sep)
        if not set(parts[:-1]) & set(NOT_PLAYBOOKS):
            names.append('cerniq.ops.' + '.'.join(parts))
    return sorted(names)


def _wrapped():
    wrapped = {}
    for path in glob.glob(os.path.join(EXAMPLE_PROJECT, '*.yml')):
        with open(path) as handle:
            plays = yaml.safe_load(handle)
        assert len(plays) == 1 and set(plays[0]) == {'name', 'ansible.builtin.import_playbook'}, path
        wrapped[plays[0]['ansible.builtin.import_playbook']] = os.path.basename(path)
    return wrapped


def test_every_shipped_playbook_has_a_wrapper_in_the_example_project():
    playbooks = shipped_playbooks()
    assert 'cerniq.ops.runbook.sla_breach' in playbooks and 'cerniq.ops.daily_maintenance' in playbooks
    assert sorted(_wrapped()) == playbooks


def test_every_playbook_resolves_by_fqcn_from_the_installed_tarball(awx_collections, tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=awx_collections, ANSIBLE_NOCOLOR='1')
    fqcn = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '--syntax-check'] + shipped_playbooks(),
                          env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    assert fqcn.returncode == 0, fqcn.stdout
    wrappers = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'inventory/hosts.yml', '--syntax-check']
                              + sorted(_wrapped().values()), env=env, cwd=EXAMPLE_PROJECT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
    assert wrappers.returncode == 0, wrappers.stdout


def test_a_playbook_runs_by_fqcn_under_ansible_runner(job, cerniq_db):
    """`ansible-runner run DIR -p cerniq.ops.index_report`: no file of the project needed."""
    cerniq_db.load()
    done = job('cerniq.ops.index_report', cerniq_db.connections(redis=False))
    assert done.status == 'successful', done
    assert done.artifacts['cerniq_index_report']['database'] == cerniq_db.database


def test_the_tarball_carries_the_license_and_the_example_project(tarball):
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        license_text = tar.extractfile('LICENSE').read().decode()
    assert license_text.startswith('                    GNU GENERAL PUBLIC LICENSE\n                       Version 3')
    with open(os.path.join(REPO, 'LICENSE')) as handle:
        assert handle.read() == license_text
    assert 'docs/examples/awx-project/collections/requirements.yml' in names
    assert 'meta/execution-environment.yml' in names
    assert 'CHANGELOG.rst' in names and 'changelogs/changelog.yaml' in names
