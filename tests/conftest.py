"""Shared fixtures: throwaway PostgreSQL and Redis servers on free loopback ports.

Servers are session-scoped (started once, removed at the end); each test gets a
fresh database or an emptied Redis so tests never see each other's data.
"""

import itertools
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from cerniq_testkit.ansible_run import collections_root  # noqa: E402
from cerniq_testkit.servers import PostgresServer, RedisCluster, RedisServer  # noqa: E402

# Engines are imported as the collection (ansible_collections.cerniq.ops...).
if collections_root() not in sys.path:
    sys.path.insert(0, collections_root())

_db_counter = itertools.count()


@pytest.fixture(scope='session')
def pg_server():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_db(pg_server, request):
    """A fresh, empty database owned by the app role; yields module-style params."""
    name = 'test_%d_%d' % (os.getpid(), next(_db_counter))
    pg_server.psql('CREATE DATABASE %s OWNER cerniq' % name)
    params = pg_server.params(database=name)
    yield params
    pg_server.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)


@pytest.fixture
def pg_conn(pg_db):
    """An autocommit psycopg2 connection to the test database (app role)."""
    import psycopg2
    conn = psycopg2.connect(host=pg_db['login_host'], port=pg_db['login_port'], dbname=pg_db['login_db'],
                            user=pg_db['login_user'], password=pg_db['login_password'])
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope='session')
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_params(redis_server):
    """Module-style params of an emptied Redis."""
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.params()


@pytest.fixture
def redis_client(redis_server, redis_params):
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture(scope='session')
def redis_auth_server():
    with RedisServer(password='s3cret-redis-pass') as server:
        yield server


@pytest.fixture(scope='session')
def redis_cluster():
    with RedisCluster() as cluster:
        yield cluster
