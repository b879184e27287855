"""Fixtures of the runner layer: the collection as AWX gets it, and throwaway servers with secrets.

- ``tarball``: ``ansible-galaxy collection build`` of this checkout;
- ``awx_collections``: the example AWX project's collections/requirements.yml installed the way
  an AWX project sync does (``ansible-galaxy collection install -r``), its source pointed at the
  tarball;
- ``services``: PostgreSQL and Redis on free loopback ports, with random passwords that the
  jobs get as AWX credentials do (environment variables) and that must never show in a job's
  output or events;
- ``cerniq_db``: a fresh database with the CERNIQ schema and synthetic data per test, an
  emptied Redis.
"""

import glob
import itertools
import os
import secrets as random_secrets
import shutil
import subprocess

import pytest
import yaml

from tests.runner.awx_job import EXAMPLE_PROJECT, VENV_BIN, run_job
from cerniq_testkit.servers import PostgresServer, RedisServer

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema, synthetic as cerniq_synthetic
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = '7'
_databases = itertools.count()


@pytest.fixture(scope='session')
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp('build')
    subprocess.run([os.path.join(VENV_BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(out), REPO],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return glob.glob(str(out / 'cerniq-ops-*.tar.gz'))[0]


@pytest.fixture(scope='session')
def awx_collections(tarball, tmp_path_factory):
    """The example project's collections/requirements.yml installed as a project sync does it."""
    base = tmp_path_factory.mktemp('awx-project-sync')
    with open(os.path.join(EXAMPLE_PROJECT, 'collections', 'requirements.yml')) as handle:
        requirements = yaml.safe_load(handle)
    assert [c['name'] for c in requirements['collections']] and requirements['collections'][0]['type'] == 'url'
    # The example downloads the tarball from an artifact server; here the same tarball is a local file.
    requirements['collections'] = [{'name': tarball, 'type': 'file'}]
    with open(str(base / 'requirements.yml'), 'w') as handle:
        yaml.safe_dump(requirements, handle)
    dest = base / 'requirements_collections'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest))
    subprocess.run([os.path.join(VENV_BIN, 'ansible-galaxy'), 'collection', 'install', '--offline',
                    '-r', str(base / 'requirements.yml'), '-p', str(dest)],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert os.path.exists(str(dest / 'ansible_collections' / 'cerniq' / 'ops' / 'MANIFEST.json'))
    return str(dest)


class Services:
    """The throwaway servers and the credentials a job gets."""

    def __init__(self, pg, redis, report_dir):
        self.pg = pg
        self.redis = redis
        self.report_dir = report_dir
        self.pg_password = 'pg-%s' % random_secrets.token_hex(12)
        self.api_token = 'api-%s' % random_secrets.token_hex(12)
        pg.psql("ALTER ROLE cerniq PASSWORD '%s'" % self.pg_password)

    @property
    def secrets(self):
        return (self.pg_password, self.redis.password, self.api_token)

    @property
    def envvars(self):
        """The AWX credential of type CERNIQ (docs/examples/awx-project/controller): environment injectors."""
        return {'PGPASSWORD': self.pg_password, 'REDISCLI_AUTH': self.redis.password,
                'CERNIQ_API_TOKEN': self.api_token}

    def connections(self, database, redis=True):
        """Inventory settings (no secrets) of the example project for these servers."""
        return dict(
            cerniq_postgres=dict(login_host='127.0.0.1', login_port=self.pg.port, login_db=database,
                                 login_user='cerniq'),
            cerniq_redis=dict(redis_host='127.0.0.1', redis_port=self.redis.port) if redis else {},
            cerniq_api_url='', cerniq_report_dir=self.report_dir)

    def redis_client(self):
        return self.redis.client()

    def pg_params(self, database):
        return dict(login_host='127.0.0.1', login_port=self.pg.port, login_db=database, login_user='cerniq',
                    login_password=self.pg_password)


@pytest.fixture(scope='session')
def services(tmp_path_factory):
    with PostgresServer() as pg, RedisServer(password='redis-%s' % random_secrets.token_hex(12)) as redis:
        yield Services(pg, redis, str(tmp_path_factory.mktemp('reports')))


class CerniqData:
    """A fresh CERNIQ database (schema + synthetic baseline) and an emptied Redis for one test."""

    def __init__(self, services, database):
        self.services = services
        self.database = database
        self.redis = services.redis_client()
        self.redis.flushall()

    def load(self, scale=0.05):
        conn = connect_postgres(self.services.pg_params(self.database))
        try:
            cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
            cerniq_synthetic.load(conn, SEED, dict(scale=scale, tenants=1))
        finally:
            conn.close()
        return self

    def inject(self, names, **options):
        conn = connect_postgres(self.services.pg_params(self.database))
        try:
            return cerniq_synthetic.inject(conn, SEED, names, options, redis_client=self.redis)['incidents']
        finally:
            conn.close()

    def query(self, sql, *args):
        conn = connect_postgres(self.services.pg_params(self.database))
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchone()
        finally:
            conn.close()

    def connections(self, redis=True):
        return self.services.connections(self.database, redis)


@pytest.fixture
def cerniq_db(services):
    name = 'awx_%d_%d' % (os.getpid(), next(_databases))
    services.pg.psql('CREATE DATABASE %s OWNER cerniq' % name)
    data = CerniqData(services, name)
    yield data
    data.redis.close()
    services.pg.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)


@pytest.fixture
def job(awx_collections, services):
    """run_job with the collection from the project sync and the CERNIQ credential's environment."""
    def run(playbook, connections, extravars=None, envvars=None, **kwargs):
        env = dict(services.envvars)
        env.update(envvars or {})
        return run_job(playbook, connections, extravars=extravars, envvars=env, secrets=services.secrets,
                       collections_path=awx_collections, **kwargs)
    return run


@pytest.fixture
def podman_worker():
    """A container named cerniq-ee-worker-* standing in for the workers' service (restarted by the jobs)."""
    if shutil.which('podman') is None:
        pytest.skip('podman not installed')
    env = dict(os.environ, CONTAINERS_CONF=os.path.join(REPO, 'extensions', 'molecule', 'containers.conf'))
    image = subprocess.run([os.path.join(REPO, 'scripts', 'build-image.sh')], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, check=True).stdout.strip().splitlines()[-1]
    name = 'cerniq-ee-worker-%d' % os.getpid()
    subprocess.run(['podman', 'run', '-d', '--name', name, image, 'sleep', 'infinity'], env=env, check=True,
                   stdout=subprocess.DEVNULL)

    def started_at():
        return subprocess.run(['podman', 'inspect', '-f', '{{.State.StartedAt}}', name], env=env, check=True,
                              stdout=subprocess.PIPE, text=True).stdout.strip()
    yield name, started_at
    subprocess.run(['podman', 'rm', '-f', '-t', '0', name], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
