"""Unit tests of the Redis connection helpers that need no server."""

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
])
def test_classify_connect_error(error, cause):
    assert rc.classify_connect_error(error) == cause


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
