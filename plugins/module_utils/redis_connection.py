# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Redis connection layer for every module, job and test of the collection.

``connect_redis`` is plain Python and raises ``RedisConnectError`` with a
one-line message naming the server and the cause; ``redis_connect_module`` is
the Ansible front end (``missing_required_lib``, ``fail_json``).
Supports a single server, Sentinel (master name + sentinel nodes) and Redis
Cluster.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option

REDIS_IMPORT_ERROR = None
try:
    import redis
    from redis import exceptions as redis_exceptions
    HAS_REDIS = True
except ImportError:  # pragma: no cover - exercised by the missing-library test
    redis = None
    redis_exceptions = None
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()


# The connection options every Redis module shares (documented once in the
# cerniq.ops.redis doc fragment).
REDIS_COMMON_ARGS = dict(
    redis_host=dict(type='str', default='localhost'),
    redis_port=dict(type='int', default=6379),
    redis_db=dict(type='int', default=0),
    redis_username=dict(type='str'),
    redis_password=dict(type='str', no_log=True),
    redis_tls=dict(type='bool', default=False),
    redis_ca_certs=dict(type='path'),
    redis_validate_certs=dict(type='bool', default=True),
    redis_client_cert=dict(type='path'),
    redis_client_key=dict(type='path', no_log=False),
    redis_socket_timeout=dict(type='str', default='5s'),
    redis_sentinel_master=dict(type='str'),
    redis_sentinel_nodes=dict(type='list', elements='str', default=[]),
    redis_cluster=dict(type='bool', default=False),
)

REDIS_ENV_FALLBACKS = dict(
    redis_password=('REDISCLI_AUTH',),
)


MAX_SOCKET_TIMEOUT = 3600.0
TLS_FILES = ('redis_ca_certs', 'redis_client_cert', 'redis_client_key')


class RedisConnectError(Exception):
    """Connection failed; the message is one line naming the server and the cause."""


def redis_argument_spec():
    """A fresh copy of the connection options, with env fallbacks, for a module's argument_spec."""
    from ansible.module_utils.basic import env_fallback

    spec = {}
    for name, option in REDIS_COMMON_ARGS.items():
        option = dict(option)
        if name in REDIS_ENV_FALLBACKS:
            option['fallback'] = (env_fallback, list(REDIS_ENV_FALLBACKS[name]))
        if isinstance(option.get('default'), list):
            option['default'] = list(option['default'])
        spec[name] = option
    return spec


def describe_server(params):
    if params.get('redis_sentinel_master'):
        return 'sentinel master %s via %s' % (
            params['redis_sentinel_master'], ','.join(params.get('redis_sentinel_nodes') or []) or '?')
    kind = 'cluster node ' if params.get('redis_cluster') else ''
    return '%s%s:%s' % (kind, params.get('redis_host') or 'localhost', params.get('redis_port') or 6379)


def classify_connect_error(error):
    text = str(error).lower()
    if 'cluster mode is not enabled' in text:
        return 'not a Redis Cluster node (set redis_cluster to false)'
    if 'db index is out of range' in text:
        return 'no such database (redis_db is above the server\'s "databases" setting)'
    if 'noauth' in text or 'authentication required' in text or 'already authenticated' in text:
        return 'authentication required (no password given)'
    if isinstance(error, redis_exceptions.AuthenticationError) or 'wrongpass' in text \
            or 'invalid password' in text or 'invalid username-password' in text:
        return 'authentication failed'
    if 'certificate verify failed' in text:
        return 'TLS certificate not trusted'
    if isinstance(error, redis_exceptions.TimeoutError) or 'timeout' in text or 'timed out' in text:
        return 'connection timed out'
    if '[ssl' in text or 'wrong version number' in text or 'ssl handshake' in text:
        return 'TLS handshake failed'
    if isinstance(error, (redis_exceptions.ConnectionError, OSError)) or 'connection refused' in text:
        return 'server unreachable'
    return 'connection failed'


def _one_line(error, limit=300):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[0] if lines else error.__class__.__name__
    return line if len(line) <= limit else line[:limit] + '...'


def socket_timeout_seconds(params):
    """Seconds of ``redis_socket_timeout`` (a duration, more than 0 and at most 1h; 5s unset)."""
    value = params.get('redis_socket_timeout')
    try:
        return duration_option(REDIS_COMMON_ARGS['redis_socket_timeout']['default'] if value is None else value,
                               'redis_socket_timeout', 0.001, MAX_SOCKET_TIMEOUT)
    except DurationError as error:
        raise RedisConnectError(str(error))


def _no_retry():
    """A retry policy of no retries, or None where redis-py has no such setting (before 4.0: none is made).

    redis-py 8 re-sends a command up to 10 times after a connection error or a timeout (6 and 7: 3
    times). That multiplies ``redis_socket_timeout`` (a hung server held a task for 11 timeouts), and a
    write whose reply was lost would run again. A failed call fails the task instead, with what was
    done so far, whatever the library's version.
    """
    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:  # pragma: no cover - redis-py before 4.0
        return None
    return Retry(NoBackoff(), 0)


def _client_kwargs(params):
    kwargs = dict(
        username=params.get('redis_username') or None,
        password=params.get('redis_password') or None,
        socket_timeout=socket_timeout_seconds(params),
        socket_connect_timeout=socket_timeout_seconds(params),
    )
    retry = _no_retry()
    if retry is not None:
        kwargs['retry'] = retry
    if params.get('redis_tls'):
        kwargs.update(
            ssl=True,
            ssl_ca_certs=params.get('redis_ca_certs'),
            ssl_certfile=params.get('redis_client_cert'),
            ssl_keyfile=params.get('redis_client_key'),
            ssl_cert_reqs='required' if params.get('redis_validate_certs', True) else 'none',
        )
        if not params.get('redis_validate_certs', True):
            kwargs['ssl_check_hostname'] = False
    return kwargs


def _parse_node(text):
    host, sep, port = str(text).rpartition(':')
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RedisConnectError('invalid sentinel node %r: expected host:port with a port from 1 to 65535' % text)
    return host, int(port)


def _integer(params, name, default, low, high):
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise RedisConnectError('%s must be an integer from %d to %d, got %r' % (name, low, high, value))
    if not low <= value <= high:
        raise RedisConnectError('%s must be from %d to %d, got %d' % (name, low, high, value))
    return value


def check_redis_params(params):
    """Refuse bad connection options before any connection is tried (one line, nothing secret)."""
    host = params.get('redis_host')
    if host is not None and not str(host).strip():
        raise RedisConnectError('redis_host is empty: give a host name or address (default localhost)')
    _integer(params, 'redis_port', 6379, 1, 65535)
    _integer(params, 'redis_db', 0, 0, 2 ** 31 - 1)
    socket_timeout_seconds(params)
    if params.get('redis_cluster') and params.get('redis_sentinel_master'):
        raise RedisConnectError('redis_cluster and redis_sentinel_master exclude each other: choose one')
    if params.get('redis_sentinel_master'):
        nodes = [_parse_node(node) for node in params.get('redis_sentinel_nodes') or []]
        if not nodes:
            raise RedisConnectError('redis_sentinel_master is set but redis_sentinel_nodes is empty')
    if params.get('redis_client_key') and not params.get('redis_client_cert'):
        raise RedisConnectError('redis_client_key is set but redis_client_cert is not')
    if params.get('redis_tls'):
        for name in TLS_FILES:
            path = params.get(name)
            if path and not os.path.isfile(path):
                raise RedisConnectError('%s: no such file %s' % (name, path))
            if path and not os.access(path, os.R_OK):
                raise RedisConnectError('%s: cannot read %s (permission denied)' % (name, path))


def connect_redis(params, decode_responses=False):
    """A connected, pinged client (``redis.Redis`` or ``redis.cluster.RedisCluster``).

    Keys and values are bytes unless ``decode_responses``: key names may hold any bytes.
    Raises ``RedisConnectError`` (one line, no password) on any failure.
    """
    if not HAS_REDIS:
        raise RedisConnectError('the Python library redis (redis-py) is not installed')
    check_redis_params(params)
    kwargs = _client_kwargs(params)
    try:
        if params.get('redis_sentinel_master'):
            from redis.sentinel import Sentinel
            nodes = [_parse_node(node) for node in params.get('redis_sentinel_nodes') or []]
            sentinel = Sentinel(nodes, socket_timeout=kwargs['socket_timeout'], sentinel_kwargs={
                key: kwargs[key] for key in ('username', 'password', 'socket_timeout') if kwargs.get(key)})
            client = sentinel.master_for(params['redis_sentinel_master'], db=params.get('redis_db') or 0,
                                         decode_responses=decode_responses, **kwargs)
        elif params.get('redis_cluster'):
            from redis.cluster import RedisCluster
            client = RedisCluster(host=params.get('redis_host') or 'localhost', port=params.get('redis_port') or 6379,
                                  decode_responses=decode_responses, **kwargs)
        else:
            client = redis.Redis(host=params.get('redis_host') or 'localhost', port=params.get('redis_port') or 6379,
                                 db=params.get('redis_db') or 0, decode_responses=decode_responses, **kwargs)
        client.ping()
    except RedisConnectError:
        raise
    except (redis_exceptions.RedisError, redis_exceptions.RedisClusterException, OSError) as error:
        raise RedisConnectError('cannot connect to Redis %s: %s (%s)' % (
            describe_server(params), classify_connect_error(error), _one_line(error)))
    return client


def redis_connect_module(module, decode_responses=False):
    """Connect for an Ansible module or fail with a one-line message."""
    if not HAS_REDIS:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib('redis'), exception=REDIS_IMPORT_ERROR)
    try:
        return connect_redis(module.params, decode_responses=decode_responses)
    except RedisConnectError as error:
        module.fail_json(msg=str(error))


def is_cluster(client):
    return HAS_REDIS and client.__class__.__name__ == 'RedisCluster'
