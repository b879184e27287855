"""Worker restarts (runbook 2.1 option A, 2.2 step 4) against a real podman container.

The runbook procedures restart the worker the way the site runs it; here the
"worker" is a container of the project's own image, and the test checks that it
was really restarted (a new start time) and that `none` leaves it alone.
"""

import os
import shutil
import subprocess

import pytest

from tests.support.ansible_run import REPO, run_playbook

pytestmark = pytest.mark.skipif(shutil.which('podman') is None, reason='podman not installed')

ENV = dict(os.environ, CONTAINERS_CONF=os.path.join(REPO, 'extensions', 'molecule', 'containers.conf'))


def _podman(*args):
    return subprocess.run(['podman'] + list(args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=True).stdout.strip()


@pytest.fixture
def worker_container():
    image = subprocess.run([os.path.join(REPO, 'scripts', 'build-image.sh')], env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, check=True).stdout.strip().splitlines()[-1]
    name = 'cerniq-test-worker-%d' % os.getpid()
    _podman('run', '-d', '--name', name, image, 'sleep', 'infinity')
    yield name
    subprocess.run(['podman', 'rm', '-f', '-t', '0', name], env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def _play(tmp_path, name, kind):
    play = tmp_path / 'restart.yml'
    play.write_text(
        '- name: Restart a worker\n  hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - name: Restart\n      ansible.builtin.include_tasks: %s/playbooks/runbook/tasks/restart_worker.yml\n'
        '      vars:\n        cerniq_worker_name: %s\n        cerniq_worker_restart: %s\n' % (REPO, name, kind))
    return run_playbook(str(play), env={'CONTAINERS_CONF': ENV['CONTAINERS_CONF']})


def test_podman_worker_is_restarted_and_none_leaves_it(worker_container, tmp_path):
    started = _podman('inspect', '-f', '{{.State.StartedAt}}', worker_container)
    untouched = _play(tmp_path, worker_container, 'none')
    assert untouched.returncode == 0, untouched.stdout
    assert 'restart %s yourself' % worker_container in untouched.stdout
    assert _podman('inspect', '-f', '{{.State.StartedAt}}', worker_container) == started
    restarted = _play(tmp_path, worker_container, 'podman')
    assert restarted.returncode == 0, restarted.stdout
    assert _podman('inspect', '-f', '{{.State.StartedAt}}', worker_container) != started
    assert _podman('inspect', '-f', '{{.State.Running}}', worker_container) == 'true'
