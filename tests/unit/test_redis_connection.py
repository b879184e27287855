"""Unit tests of the Redis connection helpers that need no server."""

import time

import pytest
from redis import exceptions

from ansible_collections.cerniq.ops.plugins.module_utils import redis_connection as rc


def test_describe_server_variants():
    assert rc.describe_server(dict(redis_host='r', redis_port=1)) == 'r:1'
    assert rc.describe_server(dict(redis_host='r', redis_port=1, redis_cluster=True)) == 'cluster node r:1'
    assert 'mymaster' in rc.describe_server(dict(redis_sentinel_master='mymaster', redis_sentinel_nodes=['s:26379']))


@pytest.mark.parametrize('error, cause', [
    (exceptions.AuthenticationError('invalid username-password pair'), 'authentication failed'),
    (exceptions.ResponseError('WRONGPASS invalid username-password pair'), 'authentication failed'),
    (exceptions.AuthenticationError('Authentication required.'), 'authentication required (no password given)'),
    (exceptions.ConnectionError('Error 111 connecting to 127.0.0.1:1. Connection refused.'), 'server unreachable'),
    (exceptions.TimeoutError('Timeout connecting to server'), 'connection timed out'),
    (exceptions.RedisClusterException('Redis Cluster cannot be connected. Please provide at least one reachable node: '
                                      'Cluster mode is not enabled on this node'),
     'not a Redis Cluster node (set redis_cluster to false)'),
    (exceptions.RedisClusterException('Redis Cluster cannot be connected. Please provide at least one reachable node: '
                                      'Error 111 connecting to 127.0.0.1:1. Connection refused.'), 'server unreachable'),
    (exceptions.ResponseError('DB index is out of range'), 'no such database'),
    (exceptions.ConnectionError('Error 111 connecting to ssl-redis.internal:6379. Connection refused.'),
     'server unreachable'),
    (exceptions.ConnectionError('Error 1 connecting to 127.0.0.1:6380. [SSL: CERTIFICATE_VERIFY_FAILED] '
                                'certificate verify failed: self-signed certificate in certificate chain (_ssl.c:992).'),
     'TLS certificate not trusted'),
])
def test_classify_connect_error(error, cause):
    assert rc.classify_connect_error(error).startswith(cause)


def test_tls_options_map_to_redis_py():
    kwargs = rc._client_kwargs(dict(redis_tls=True, redis_ca_certs='/ca.pem', redis_validate_certs=False,
                                    redis_client_cert='/c.pem', redis_client_key='/k.pem', redis_password='p'))
    assert kwargs['ssl'] is True
    assert kwargs['ssl_ca_certs'] == '/ca.pem'
    assert kwargs['ssl_cert_reqs'] == 'none'
    assert kwargs['ssl_check_hostname'] is False
    assert kwargs['password'] == 'p'


def test_bad_sentinel_node_is_a_clear_error():
    with pytest.raises(rc.RedisConnectError, match='invalid sentinel node'):
        rc.connect_redis(dict(redis_sentinel_master='m', redis_sentinel_nodes=['no-port']))


@pytest.mark.parametrize('change, message', [
    (dict(redis_port=0), 'redis_port must be from 1 to 65535, got 0'),
    (dict(redis_port='http'), "redis_port must be an integer from 1 to 65535, got 'http'"),
    (dict(redis_port=True), 'redis_port must be an integer'),
    (dict(redis_db=-1), 'redis_db must be from 0'),
    (dict(redis_socket_timeout='0s'), 'redis_socket_timeout must be between 1ms and 1h'),
    (dict(redis_socket_timeout=float('nan')), 'redis_socket_timeout: nan is not a duration with a unit'),
    (dict(redis_socket_timeout='1 day'), 'redis_socket_timeout must be between 1ms and 1h'),
    (dict(redis_socket_timeout=5), 'redis_socket_timeout: 5 is not a duration with a unit'),
    (dict(redis_cluster=True, redis_sentinel_master='m', redis_sentinel_nodes=['h:26379']), 'exclude each other'),
    (dict(redis_sentinel_master='m', redis_sentinel_nodes=['h:0']), 'invalid sentinel node'),
    (dict(redis_client_key='/k.pem'), 'redis_client_key is set but redis_client_cert is not'),
    (dict(redis_host=' '), 'redis_host is empty'),
])
def test_redis_options_checked_before_connecting(change, message):
    """Nothing listens at 192.0.2.1 (TEST-NET-1): a connection attempt would take the whole timeout."""
    params = dict(redis_host='192.0.2.1', redis_port=6379, redis_socket_timeout='30s')
    params.update(change)
    started = time.monotonic()
    with pytest.raises(rc.RedisConnectError, match=message.replace('(', r'\(').replace(')', r'\)')):
        rc.connect_redis(params)
    assert time.monotonic() - started < 5
