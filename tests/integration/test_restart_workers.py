"""Worker restarts (runbook 2.1 option A, 2.2 step 4) against a real podman container.

The runbook procedures restart the worker the way the site runs it; here the
"worker" is a container of the project's own image, and the test checks that it
was really restarted (a new start time) and that `none` leaves it alone.
"""

import os
import shutil
import subprocess

import pytest

from cerniq_testkit.ansible_run import REPO, run_playbook

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
        '- name: Restart a worker\n  hosts: localhost\n  gather_facts: false\n'
        '  roles:\n    - role: cerniq.ops.cerniq\n  tasks:\n'
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


def _restart_play(tmp_path, worker, redis_params, retries):
    import json
    play = tmp_path / 'restart_and_wait.yml'
    play.write_text(json.dumps([{
        'name': 'Restart a worker and wait for progress', 'hosts': 'localhost', 'gather_facts': False,
        'roles': [{'role': 'cerniq.ops.cerniq'}],
        'module_defaults': {'group/cerniq.ops.redis': redis_params},
        'vars': {'cerniq_restart_workers': [worker], 'cerniq_restart_progress_retries': retries,
                 'cerniq_restart_progress_delay': 1},
        'tasks': [{'name': 'Restart', 'ansible.builtin.include_tasks': REPO + '/playbooks/tasks/restart_workers.yml'}],
    }]))
    return run_playbook(str(play), env={'CONTAINERS_CONF': ENV['CONTAINERS_CONF']})


def test_env_change_restart_and_wait_for_progress(worker_container, tmp_path, redis_server, redis_params,
                                                  redis_client):
    """runbook 2.2 step 3-4: lower the concurrency in the env file, restart, wait until the queue moves."""
    from cerniq_testkit.bullmq_helpers import PY_CURRENT, run, start_worker
    env_file = tmp_path / 'workers.env'
    env_file.write_text('ANAF_CONCURRENCY=4\nTERMENE_CONCURRENCY=10\n')
    queue = 'silver:enrich:anaf-fiscal-status'
    run(PY_CURRENT, 'produce', redis_server.port, queue, '--count', 20)
    worker = dict(name=worker_container, kind='podman', queue=queue, env_file=str(env_file),
                  env=['ANAF_CONCURRENCY=1'])
    # No BullMQ worker consumes the queue: no progress, the wait gives up and says so.
    stuck = _restart_play(tmp_path, worker, redis_params, retries=3)
    assert stuck.returncode != 0
    assert 'Wait for progress' in stuck.stdout and 'FAILED - RETRYING' in stuck.stdout
    assert env_file.read_text() == 'ANAF_CONCURRENCY=1\nTERMENE_CONCURRENCY=10\n'
    # A real worker takes the jobs: the wait sees completed jobs and the restart succeeds.
    consumer = start_worker(PY_CURRENT, redis_server.port, queue, '--sleep-ms', 200, '--seconds', 60,
                            '--until', 20, '--record', 'test:restart-progress')
    try:
        moving = _restart_play(tmp_path, worker, redis_params, retries=60)
        assert moving.returncode == 0, moving.stdout
        assert redis_client.zcard('bull:%s:completed' % queue) > 0
    finally:
        consumer.kill()
        consumer.wait()
