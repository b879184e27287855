"""cerniq.ops.worker_container: runbook 2.2 step 3 takes effect in real containers (issue 17 item 2).

``podman restart`` keeps the environment a container was created with; the module re-creates the
worker and the test reads the new environment from the running process (``podman exec env``).
The docker path speaks the Docker Engine API: no Docker engine runs on this machine, so it is
exercised against podman's Docker-compatible API service (``podman system service``) on a private
socket - the same requests, answered by a real engine. The compose path runs podman-compose (Debian's
package) when it is installed; docker compose is not tested (no Docker engine).
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.worker_containers import (
    CONTAINERS_CONF, ENV, HAVE_PODMAN, inspect, podman, remove, running_env, worker_image)

pytestmark = pytest.mark.skipif(not HAVE_PODMAN, reason='podman not installed')
RUN_ENV = {'CONTAINERS_CONF': CONTAINERS_CONF}


@pytest.fixture
def worker(tmp_path):
    """A podman worker created with an env file holding the old concurrency."""
    env_file = tmp_path / 'workers.env'
    env_file.write_text('ANAF_CONCURRENCY=4\nTERMENE_CONCURRENCY=10\n')
    name = 'cerniq-test-enrich-%d' % os.getpid()
    podman('run', '-d', '--name', name, '--env-file', env_file, '--label', 'app=cerniq', '-e', 'KEEP=me',
           worker_image(), 'sleep', 'infinity')
    yield name, env_file
    remove(name)
    remove(name + '-cerniq-old')


def test_podman_restart_keeps_the_old_environment(worker):
    """The defect: the env file changed, ``podman restart`` ran, the worker still has the old value."""
    name, env_file = worker
    env_file.write_text('ANAF_CONCURRENCY=1\nTERMENE_CONCURRENCY=10\n')
    podman('restart', name)
    assert running_env(name)['ANAF_CONCURRENCY'] == '4'


def test_podman_worker_is_recreated_with_the_new_settings(worker):
    name, env_file = worker
    before = inspect(name)
    args = dict(name=name, runtime='podman', env=['ANAF_CONCURRENCY=1', 'TERMENE_CONCURRENCY=5'], state='present',
                stop_timeout='1s')
    check = run_module('worker_container', args, check_mode=True, env=RUN_ENV)
    assert not check.failed and check['changed'] and check['method'] == 'recreated', check
    assert check['differing'] == ['ANAF_CONCURRENCY', 'TERMENE_CONCURRENCY']
    assert inspect(name)['Id'] == before['Id']

    done = run_module('worker_container', args, env=RUN_ENV)
    assert not done.failed and done['changed'], done
    assert done['env'] == {'ANAF_CONCURRENCY': '1', 'TERMENE_CONCURRENCY': '5'}
    after = inspect(name)
    assert after['Id'] == done['container_id'] != before['Id'] and after['State']['Running']
    live = running_env(name)
    assert live['ANAF_CONCURRENCY'] == '1' and live['TERMENE_CONCURRENCY'] == '5' and live['KEEP'] == 'me'
    assert after['Config']['Labels']['app'] == 'cerniq'
    assert podman('ps', '-a', '--filter', 'name=%s-cerniq-old' % name, '--format', '{{.Names}}') == ''

    again = run_module('worker_container', args, env=RUN_ENV)
    assert not again.failed and not again['changed'] and again['method'] == 'none'
    assert inspect(name)['Id'] == after['Id']


def test_a_setting_overridden_by_the_container_is_reported(worker):
    """KEEP is set with -e on the container's own command line, after the env: the new value cannot win."""
    name = worker[0]
    result = run_module('worker_container', dict(name=name, runtime='podman', env=['KEEP=other']), env=RUN_ENV)
    assert result.failed and 'runs without the new settings: KEEP=me' in result['msg'], result
    assert inspect(name)['State']['Running']


def test_a_failed_recreation_puts_the_old_container_back():
    """The recorded command names an image tag that is gone: the new container cannot be created, the old
    one gets its name back and runs again with its settings."""
    name = 'cerniq-test-rollback-%d' % os.getpid()
    tag = 'localhost/cerniq-test-gone:%d' % os.getpid()
    podman('tag', worker_image(), tag)
    try:
        podman('run', '-d', '--name', name, '-e', 'ANAF_CONCURRENCY=4', tag, 'sleep', 'infinity')
        # `podman untag IMAGE` alone removes every name of the image - the project's base image tags
        # too (Molecule then failed to create its containers, and every run rebuilt the image): this name only.
        podman('untag', tag, tag)
        before = inspect(name)
        result = run_module('worker_container', dict(name=name, runtime='podman', env=['ANAF_CONCURRENCY=1']),
                            env=RUN_ENV)
        assert result.failed and 'could not be re-created' in result['msg'], result
        assert 'the old container is back' in result['msg'] and '\n' not in result['msg']
        after = inspect(name)
        assert after['Id'] == before['Id'] and after['State']['Running']
        assert running_env(name)['ANAF_CONCURRENCY'] == '4'
        assert podman('ps', '-a', '--filter', 'name=%s-cerniq-old' % name, '--format', '{{.Names}}') == ''
    finally:
        remove(name)
        podman('untag', tag, tag, check=False)


def test_bad_input_is_one_line():
    for args, words in ((dict(env=['no-equals']), 'KEY=VALUE'), (dict(stop_timeout='10'), 'stop_timeout'),
                        (dict(name='cerniq-no-such-worker'), 'no container named'),
                        (dict(runtime='docker', docker_host='tcp://127.0.0.1:1'), 'unix://')):
        result = run_module('worker_container', dict(dict(name='x', runtime='podman'), **args), env=RUN_ENV)
        assert result.failed and words in result['msg'] and 'Traceback' not in result.get('module_stderr', ''), result


@pytest.fixture
def docker_api(tmp_path):
    """podman's Docker-compatible API on a private socket, for the real docker CLI and the module."""
    sock = tmp_path / 'docker.sock'
    service = subprocess.Popen(['podman', 'system', 'service', '--time=0', 'unix://%s' % sock], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.2)
    yield 'unix://%s' % sock
    service.terminate()
    service.wait(10)


def _docker(host, *args):
    return subprocess.run(['docker'] + [str(a) for a in args], env=dict(os.environ, DOCKER_HOST=host),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout.strip()


def test_docker_worker_is_recreated_through_the_engine_api(docker_api):
    name = 'cerniq-test-docker-%d' % os.getpid()
    try:
        _docker(docker_api, 'run', '-d', '--name', name, '-e', 'ANAF_CONCURRENCY=4', '-e', 'KEEP=me',
                '--label', 'app=cerniq', worker_image(), 'sleep', 'infinity')
        _docker(docker_api, 'restart', name)   # the defect: a restart keeps the old value
        assert 'ANAF_CONCURRENCY=4' in _docker(docker_api, 'exec', name, 'env').splitlines()
        before = inspect(name)
        args = dict(name=name, runtime='docker', docker_host=docker_api, env=['ANAF_CONCURRENCY=1'])
        done = run_module('worker_container', args, env=RUN_ENV)
        assert not done.failed and done['method'] == 'recreated' and done['env'] == {'ANAF_CONCURRENCY': '1'}, done
        live = _docker(docker_api, 'exec', name, 'env').splitlines()
        assert 'ANAF_CONCURRENCY=1' in live and 'KEEP=me' in live
        after = inspect(name)
        assert after['Id'] != before['Id'] and after['Image'] == before['Image'] and after['State']['Running']
        assert after['Config']['Labels']['app'] == 'cerniq' and after['Config']['Cmd'] == ['sleep', 'infinity']
        assert _docker(docker_api, 'ps', '-a', '--filter', 'name=%s-cerniq-old' % name, '--format', '{{.Names}}') == ''
        again = run_module('worker_container', dict(args, state='present'), env=RUN_ENV)
        assert not again.failed and not again['changed']
    finally:
        remove(name)
        remove(name + '-cerniq-old')
        _stop_exec_monitors(name)


def _stop_exec_monitors(name):
    """podman 4.3's API service can leave the conmon of each `docker exec` session running after the
    container and the service are gone (two processes lived on after runs of this test alone):
    stop those of this test's container."""
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if argv[0].endswith(b'conmon') and b'--exec' in argv and name.encode() in argv:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def test_rate_limiting_lowers_the_concurrency_of_a_podman_worker(worker, redis_params, redis_client):
    """Runbook 2.2 through the playbook: no breaker is OPEN but ANAF's rate budget is used up - rate
    limiting all the same, so step 3 applies: the env file gets the runbook's values and the worker
    container runs with them (read from the running process); a second run changes nothing."""
    from cerniq_testkit.ansible_run import REPO, run_playbook
    name, env_file = worker
    redis_client.set('rate_limit:anaf:remaining', 0)
    playbook = os.path.join(REPO, 'playbooks', 'runbook', 'rate_limiting.yml')
    extra = dict(cerniq_redis=redis_params, cerniq_confirm=True, cerniq_worker_restart='podman',
                 cerniq_enrichment_worker=name, cerniq_worker_env_file=str(env_file), cerniq_enrichment_queues=[])
    fixed = run_playbook(playbook, extra_vars=extra, env=RUN_ENV)
    assert fixed.returncode == 0, fixed.stdout
    assert env_file.read_text() == 'ANAF_CONCURRENCY=1\nTERMENE_CONCURRENCY=5\n'
    live = running_env(name)
    assert live['ANAF_CONCURRENCY'] == '1' and live['TERMENE_CONCURRENCY'] == '5' and live['KEEP'] == 'me'
    assert '%s: recreated, running with ANAF_CONCURRENCY=1 TERMENE_CONCURRENCY=5' % name in fixed.stdout
    container = inspect(name)['Id']
    again = run_playbook(playbook, extra_vars=extra, env=RUN_ENV)
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout
    assert inspect(name)['Id'] == container


COMPOSE_FILE = """
services:
  enrichment:
    image: %s
    command: ["sleep", "infinity"]
    env_file: [workers.env]
    environment:
      KEEP: me
"""


@pytest.mark.skipif(shutil.which('podman-compose') is None, reason='podman-compose not installed')
def test_compose_worker_is_recreated_by_compose(tmp_path):
    project = 'cerniqtest%d' % os.getpid()
    (tmp_path / 'docker-compose.yml').write_text(COMPOSE_FILE % worker_image())
    env_file = tmp_path / 'workers.env'
    env_file.write_text('ANAF_CONCURRENCY=4\n')
    compose = ['podman-compose', '-p', project]
    subprocess.run(compose + ['up', '-d'], cwd=str(tmp_path), env=ENV, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    name = '%s_enrichment_1' % project
    try:
        before = inspect(name)
        env_file.write_text('ANAF_CONCURRENCY=1\n')   # runbook 2.2 step 3, written by restart_workers.yml
        done = run_module('worker_container', dict(name=name, runtime='podman', env=['ANAF_CONCURRENCY=1']),
                          env=RUN_ENV)
        assert not done.failed and done['method'] == 'compose', done
        live = running_env(name)
        assert live['ANAF_CONCURRENCY'] == '1' and live['KEEP'] == 'me'
        assert inspect(name)['Id'] != before['Id']
        # an inline compose value wins over the env file: the run says so instead of passing
        inline = run_module('worker_container', dict(name=name, runtime='podman', env=['KEEP=other']), env=RUN_ENV)
        assert inline.failed and 'runs without the new settings: KEEP=me' in inline['msg'] and inline['changed']
    finally:
        subprocess.run(compose + ['down', '-t', '0'], cwd=str(tmp_path), env=ENV, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        # podman-compose 1.0's down leaves the project's network; every run would leak one subnet
        subprocess.run(['podman', 'network', 'rm', '-f', project + '_default'], env=ENV, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
