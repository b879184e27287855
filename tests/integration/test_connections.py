"""The shared connection layer against real throwaway servers: one-line errors, never a secret."""

import os
import subprocess

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import PostgresConnectError, connect_postgres
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import RedisConnectError, connect_redis
from cerniq_testkit.ansible_run import run_module, run_playbook
from cerniq_testkit.servers import RedisServer, free_port


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
        connect_redis(dict(redis_host='127.0.0.1', redis_port=port, redis_socket_timeout='2s'))


def test_redis_calls_are_never_silently_repeated():
    """A server that accepts and never answers: one connection, one timeout, the task fails.

    redis-py 8 would re-send the command up to 10 times (11 connections here, 11 x the timeout, and a
    write whose reply was lost run again); the collection sets no retries whatever the version.
    """
    import socket
    import threading
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(32)
    accepted = []

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    stop = threading.Event()
    thread = threading.Thread(target=accept)
    thread.start()
    try:
        result = run_module('circuit_breaker_info', dict(redis_host='127.0.0.1', redis_port=listener.getsockname()[1],
                                                         redis_socket_timeout='500ms', sources=['anaf']))
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert result.failed and 'connection timed out' in result['msg'], result
    assert len(accepted) == 1, '%d connections: the client retried' % len(accepted)


def test_redis_cluster_connects(redis_cluster):
    client = connect_redis(redis_cluster.params())
    client.set('{bull}:probe', 1)
    assert client.get('{bull}:probe') == b'1'


def test_redis_cluster_flag_against_a_single_server(redis_params):
    """Defect 12: was a RedisClusterException traceback."""
    with pytest.raises(RedisConnectError) as info:
        connect_redis(dict(redis_params, redis_cluster=True))
    message = str(info.value)
    assert 'not a Redis Cluster node (set redis_cluster to false)' in message and '\n' not in message
    assert 'cluster node 127.0.0.1:%d' % redis_params['redis_port'] in message


def test_redis_db_above_the_server_databases(redis_params):
    with pytest.raises(RedisConnectError, match='no such database'):
        connect_redis(dict(redis_params, redis_db=16))


# -- TLS: a real TLS server with certificates made here -------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _make_ca(directory, name):
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', name + '.key', '-out', name + '.pem',
             '-days', '2', '-subj', '/CN=%s' % name, cwd=directory)
    return os.path.join(directory, name + '.pem')


@pytest.fixture(scope='module')
def redis_tls(tmp_path_factory):
    """A Redis server with a TLS port (certificate for 127.0.0.1 signed by a CA made here) besides its plain port."""
    directory = str(tmp_path_factory.mktemp('redis-tls'))
    ca = _make_ca(directory, 'ca')
    other_ca = _make_ca(directory, 'other-ca')
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr',
             '-subj', '/CN=127.0.0.1', cwd=directory)
    with open(os.path.join(directory, 'san.cnf'), 'w') as handle:
        handle.write('subjectAltName=IP:127.0.0.1,DNS:localhost\n')
    _openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
             '-out', 'server.pem', '-days', '2', '-extfile', 'san.cnf', cwd=directory)
    tls_port = free_port()
    with RedisServer(extra_args=['--tls-port', str(tls_port), '--tls-cert-file', os.path.join(directory, 'server.pem'),
                                 '--tls-key-file', os.path.join(directory, 'server.key'),
                                 '--tls-ca-cert-file', ca, '--tls-auth-clients', 'no']):
        yield dict(params=dict(redis_host='127.0.0.1', redis_port=tls_port, redis_tls=True, redis_ca_certs=ca,
                               redis_socket_timeout='5s'),
                   other_ca=other_ca, directory=directory)


def test_redis_tls_connects(redis_tls):
    client = connect_redis(redis_tls['params'])
    assert client.ping() and client.connection_pool.connection_kwargs.get('ssl_ca_certs')
    client.close()


def test_redis_tls_missing_ca_file_is_named(redis_tls):
    """Defect 12: a missing CA file was reported as "server unreachable"."""
    missing = os.path.join(redis_tls['directory'], 'no-such-ca.pem')
    with pytest.raises(RedisConnectError) as info:
        connect_redis(dict(redis_tls['params'], redis_ca_certs=missing))
    assert str(info.value) == 'redis_ca_certs: no such file %s' % missing
    result = run_module('redis_keys', dict(redis_tls['params'], redis_ca_certs=missing, patterns=['cache:*']))
    assert result.failed and result['msg'] == 'redis_ca_certs: no such file %s' % missing


def test_redis_tls_untrusted_certificate_is_named(redis_tls):
    with pytest.raises(RedisConnectError) as info:
        connect_redis(dict(redis_tls['params'], redis_ca_certs=redis_tls['other_ca']))
    assert 'TLS certificate not trusted' in str(info.value) and '\n' not in str(info.value)


# -- environment fallbacks: every one the cerniq.ops.redis doc fragment documents ------------------

def test_redis_env_fallbacks_are_the_documented_ones():
    import yaml
    from ansible_collections.cerniq.ops.plugins.doc_fragments.redis import ModuleDocFragment
    from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import REDIS_ENV_FALLBACKS
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    documented = {}
    for name, option in options.items():
        text = ' '.join(option['description'] if isinstance(option['description'], list) else [option['description']])
        documented.update((variable, name) for variable in __import__('re').findall(r'E\(([A-Z_]+)\)', text))
    assert documented == {variable: name for name, variables in REDIS_ENV_FALLBACKS.items() for variable in variables}


def test_redis_password_from_rediscli_auth(redis_auth_server):
    """REDISCLI_AUTH (as redis-cli reads it) gives the password, as a module process and through ansible-playbook."""
    client = redis_auth_server.client()
    client.set(b'cache:env', b'v')
    args = dict(redis_host='127.0.0.1', redis_port=redis_auth_server.port, patterns=['cache:*'])
    assert 'authentication required (no password given)' in run_module('redis_keys_info', args)['msg']
    counted = run_module('redis_keys_info', args, env=dict(REDISCLI_AUTH=redis_auth_server.password))
    assert not counted.failed and counted['matched'] == 1, counted
    wrong = run_module('redis_keys_info', dict(args, redis_password='wrong-pass'),
                       env=dict(REDISCLI_AUTH=redis_auth_server.password))
    assert wrong.failed and 'authentication failed' in wrong['msg']  # an explicit password wins

    playbook = os.path.join(redis_auth_server.base, 'env.yml')
    with open(playbook, 'w') as handle:
        handle.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                     '    - cerniq.ops.redis_keys: {redis_host: 127.0.0.1, redis_port: %d, patterns: ["cache:*"]}\n'
                     '      environment: {REDISCLI_AUTH: "{{ redis_secret }}"}\n' % redis_auth_server.port)
    proc = run_playbook(playbook, extra_vars=dict(redis_secret=redis_auth_server.password))
    assert proc.returncode == 0, proc.stdout
    assert 'changed=1' in proc.stdout and redis_auth_server.password not in proc.stdout
    assert client.exists(b'cache:env') == 0
    client.close()
