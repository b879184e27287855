"""The shared connection layer against real throwaway servers: one-line errors, never a secret."""

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import PostgresConnectError, connect_postgres
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import RedisConnectError, connect_redis
from tests.support.servers import free_port


def test_postgres_connects_with_password(pg_db):
    conn = connect_postgres(pg_db)
    with conn.cursor() as cur:
        cur.execute('select current_user, current_setting(%s)', ('application_name',))
        assert cur.fetchone() == ('cerniq', 'cerniq.ops')
    conn.close()


@pytest.mark.parametrize('change, cause', [
    (dict(login_password='wrong-password'), 'authentication failed'),
    (dict(login_db='no_such_db'), 'database does not exist'),
    (dict(login_port='FREE'), 'server unreachable'),
])
def test_postgres_errors_are_one_line_without_secret(pg_db, change, cause):
    params = dict(pg_db)
    params.update(change)
    if params['login_port'] == 'FREE':
        params['login_port'] = free_port()
    with pytest.raises(PostgresConnectError) as info:
        connect_postgres(params)
    message = str(info.value)
    assert '\n' not in message
    assert cause in message
    assert '127.0.0.1' in message
    assert 'wrong-password' not in message and 'cerniq-test-secret' not in message


def test_postgres_unix_socket(pg_server):
    conn = connect_postgres(dict(login_unix_socket=pg_server.socket_dir, login_port=pg_server.port,
                                 login_user='postgres', login_db='postgres'))
    with conn.cursor() as cur:
        cur.execute('select 1')
        assert cur.fetchone() == (1,)
    conn.close()


def test_redis_connects_and_keys_are_bytes(redis_params, redis_client):
    redis_client.set(b'k\xff', b'v')
    client = connect_redis(redis_params)
    assert client.get(b'k\xff') == b'v'


def test_redis_password(redis_auth_server):
    client = connect_redis(redis_auth_server.params())
    assert client.ping()


@pytest.mark.parametrize('password, cause', [
    ('wrong-password', 'authentication failed'),
    (None, 'authentication required'),
])
def test_redis_auth_errors(redis_auth_server, password, cause):
    params = redis_auth_server.params()
    params['redis_password'] = password
    with pytest.raises(RedisConnectError) as info:
        connect_redis(params)
    message = str(info.value)
    assert '\n' not in message and cause in message
    assert 's3cret-redis-pass' not in message and 'wrong-password' not in message


def test_redis_unreachable():
    port = free_port()
    with pytest.raises(RedisConnectError, match='127.0.0.1:%d: server unreachable' % port):
        connect_redis(dict(redis_host='127.0.0.1', redis_port=port, redis_socket_timeout=2))


def test_redis_cluster_connects(redis_cluster):
    client = connect_redis(redis_cluster.params())
    client.set('{bull}:probe', 1)
    assert client.get('{bull}:probe') == b'1'
