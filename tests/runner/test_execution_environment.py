"""The execution environment: the shipped ansible-builder definition, and jobs run inside an EE image.

ansible-builder builds only on RPM-based images and no registry is reachable here, so:
- the shipped definition (execution-environment/execution-environment.yml) is checked with
  `ansible-builder create` (the build context, offline) and the collection's own EE metadata
  (meta/execution-environment.yml) with `ansible-builder introspect`;
- an equivalent image is built from the project's Debian base by scripts/build-ee-image.sh
  (cached by recipe hash) and jobs run in it the way AWX runs them:
  `ansible-runner run --process-isolation --process-isolation-executable podman --container-image`.
  The container shares the host network, where the throwaway servers listen on loopback.
"""

import os
import shutil
import subprocess

import pytest
import yaml

from tests.runner.awx_job import CONTAINERS_CONF, REPO, VENV_BIN, run_job
from cerniq_testkit.http_recorder import HttpRecorder

pytestmark = pytest.mark.skipif(shutil.which('podman') is None, reason='podman not installed')
COLLECTION_IN_EE = '/usr/share/ansible/collections/ansible_collections/cerniq/ops/'


def test_ansible_builder_create_on_the_shipped_definition(tarball, tmp_path):
    """The definition's paths are relative to it: laid out as in the repository, with build/ holding the tarball."""
    checkout = tmp_path / 'checkout'
    shutil.copytree(os.path.join(REPO, 'execution-environment'), str(checkout / 'execution-environment'))
    for name in ('requirements.txt', 'bindep.txt'):
        shutil.copy(os.path.join(REPO, name), str(checkout / name))
    (checkout / 'build').mkdir()
    shutil.copy(tarball, str(checkout / 'build'))
    context = tmp_path / 'context'
    created = subprocess.run([os.path.join(VENV_BIN, 'ansible-builder'), 'create', '-f',
                              str(checkout / 'execution-environment' / 'execution-environment.yml'), '-c', str(context)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert created.returncode == 0, created.stdout
    containerfile = (context / 'Containerfile').read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.21 ansible-runner>=2.4,<2.5"' in containerfile
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in containerfile
    build = context / '_build'
    assert (build / 'collections' / os.path.basename(tarball)).read_bytes() == open(tarball, 'rb').read()
    galaxy = yaml.safe_load((build / 'requirements.yml').read_text())
    assert galaxy == {'collections': [{'name': 'collections/%s' % os.path.basename(tarball), 'type': 'file'}]}
    with open(os.path.join(REPO, 'requirements.txt')) as handle:
        assert (build / 'requirements.txt').read_text() == handle.read()
    assert 'postgresql [platform:rpm]' in (build / 'bindep.txt').read_text()


def test_the_installed_collection_declares_its_ee_dependencies(awx_collections):
    """What ansible-builder adds to any EE that installs cerniq.ops (from meta/execution-environment.yml)."""
    found = subprocess.run([os.path.join(VENV_BIN, 'ansible-builder'), 'introspect', '--sanitize', awx_collections],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert found.returncode == 0, found.stdout
    deps = yaml.safe_load(found.stdout.split('---', 1)[1])
    assert sorted(line.split('==')[0] for line in deps['python']) == ['psycopg2-binary', 'redis']
    assert 'postgresql-client [platform:dpkg]  # from collection cerniq.ops' in deps['system']


@pytest.fixture(scope='module')
def ee_image(tarball):
    built = subprocess.run([os.path.join(REPO, 'scripts', 'build-ee-image.sh'), tarball],
                           env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, check=False, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def _ran_in_the_ee(job):
    paths = {e['event_data'].get('task_path', '') for e in job.events if e['event'] == 'playbook_on_task_start'}
    return paths and all(path.startswith(COLLECTION_IN_EE) for path in paths)


def test_a_report_in_the_execution_environment(ee_image, cerniq_db, services):
    """Read-only: the queue diagnosis, the Redis password as an environment credential."""
    cerniq_db.load().inject(['stuck_import'])
    job = run_job('diagnose_queues.yml', cerniq_db.connections(), envvars=services.envvars, secrets=services.secrets,
                  container_image=ee_image)
    assert job.status == 'successful', job
    assert _ran_in_the_ee(job), 'the playbook did not run from the collection inside the image'
    assert job.artifacts['cerniq_diagnose_queues']['queues']['bronze:ingest:csv']['verdict'] == 'STALLED'


def test_a_procedure_in_the_execution_environment(ee_image, cerniq_db, services):
    """Acting: runbook 2.3 with the database password as an extra-vars credential, the API token from the environment."""
    breach = cerniq_db.load().inject(['sla_breach'])['sla_breach']
    connections = cerniq_db.connections(redis=False)
    with HttpRecorder() as api:
        job = run_job('runbook_sla_breach.yml', dict(connections, cerniq_api_url=api.url),
                      extravars={'cerniq_confirm': True,
                                 'cerniq_postgres': dict(connections['cerniq_postgres'],
                                                         login_password=services.pg_password)},
                      envvars={'CERNIQ_API_TOKEN': services.api_token}, secrets=services.secrets,
                      container_image=ee_image)
    assert job.status == 'successful', job
    assert _ran_in_the_ee(job)
    assert job.changed("Act - give the overloaded operators' urgent tasks back to the pool")
    assert {r['headers']['Authorization'] for r in api.requests} == {'Bearer %s' % services.api_token}
    assert cerniq_db.query('SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND escalation_level = 1',
                           breach['overdue_task_ids'])[0] == len(api.requests) > 0
    assert job.artifacts['cerniq_sla_breach']['decision'] == 'confirmed'
