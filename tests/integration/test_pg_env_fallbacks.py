"""Every libpq environment variable the cerniq.ops.postgres doc fragment documents works (issue 13, defect 5).

One test per variable, each through a real module process with the option left unset: the run succeeds
only through the variable (without it libpq would use another host, port, role, database or no
certificate), and a wrong value gives a one-line error naming the cause. The SSL variables run against
a second throwaway server with SSL on, a CA and a client certificate made here with openssl.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils import pg_connection
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.servers import PostgresServer, free_port

READ = dict(sections=['connections'])  # pg_health_info: a read-only module that only needs to connect


def _without(params, *names):
    return dict((k, v) for k, v in params.items() if k not in names)


def _ok(result):
    assert not result.failed, result
    return result


def _fails(result, *expected):
    assert result.failed, result
    message = result['msg']
    assert '\n' not in message.strip() and 'Traceback' not in message, message
    for text in expected:
        assert text in message, message
    return message


def test_every_documented_variable_is_a_fallback_of_an_option_without_default():
    """An option with a default never falls back (that was PGPORT's bug): none of them may have one."""
    spec = pg_connection.postgres_argument_spec()
    for option, variables in pg_connection.POSTGRES_ENV_FALLBACKS.items():
        assert 'default' not in spec[option], option
        assert spec[option]['fallback'][1] == list(variables), option


def test_pghost(pg_db):
    args = dict(_without(pg_db, 'login_host'), **READ)
    _ok(run_module('pg_health_info', args, env=dict(PGHOST='127.0.0.1')))
    _fails(run_module('pg_health_info', args, env=dict(PGHOST='/nonexistent-socket-dir')),
           '/nonexistent-socket-dir', 'server unreachable')


def test_pgport(pg_db):
    """Defect 5: login_port defaulted to 5432, so PGPORT never applied."""
    args = dict(_without(pg_db, 'login_port'), **READ)
    _ok(run_module('pg_health_info', args, env=dict(PGPORT=str(pg_db['login_port']))))
    closed = free_port()
    _fails(run_module('pg_health_info', args, env=dict(PGPORT=str(closed))), ':%d/' % closed, 'server unreachable')


def test_pguser(pg_db):
    args = dict(_without(pg_db, 'login_user'), **READ)
    _ok(run_module('pg_health_info', args, env=dict(PGUSER=pg_db['login_user'])))
    _fails(run_module('pg_health_info', args, env=dict(PGUSER='nobody_here')), 'nobody_here@', 'authentication failed')


def test_pgpassword(pg_db):
    args = dict(_without(pg_db, 'login_password'), **READ)
    _ok(run_module('pg_health_info', args, env=dict(PGPASSWORD=pg_db['login_password'])))
    message = _fails(run_module('pg_health_info', args, env=dict(PGPASSWORD='wrong-pass-1234')),
                     'authentication failed')
    assert 'wrong-pass-1234' not in message


def test_pgpassfile(pg_db, tmp_path):
    passfile = tmp_path / 'pgpass'
    passfile.write_text('127.0.0.1:%s:*:%s:%s\n' % (pg_db['login_port'], pg_db['login_user'], pg_db['login_password']))
    passfile.chmod(0o600)
    args = dict(_without(pg_db, 'login_password'), **READ)
    _ok(run_module('pg_health_info', args, env=dict(PGPASSFILE=str(passfile))))


def test_pgdatabase(pg_db, pg_conn):
    pg_conn.cursor().execute("CREATE TABLE only_here AS SELECT g AS id, now() - interval '2 days' AS created_at "
                             "FROM generate_series(1, 7) g")
    args = dict(_without(pg_db, 'login_db'), source_table='only_here', older_than='1 day')
    result = _ok(run_module('pg_archive', args, check_mode=True, env=dict(PGDATABASE=pg_db['login_db'])))
    assert result['moved'] == 7
    _fails(run_module('pg_archive', args, check_mode=True, env=dict(PGDATABASE='no_such_db')),
           'database does not exist')


def test_pgsslmode_against_a_server_without_ssl(pg_db):
    args = dict(pg_db, **READ)
    _ok(run_module('pg_health_info', args, env=dict(PGSSLMODE='disable')))
    _fails(run_module('pg_health_info', args, env=dict(PGSSLMODE='require')), 'SSL')


# ---------------------------------------------------------------- a server with SSL and client certificates

def _openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_ca(directory, name):
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=%s' % name,
             '-keyout', '%s.key' % name, '-out', '%s.crt' % name, cwd=directory)


def _make_cert(directory, name, common_name, ca):
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=%s' % common_name,
             '-keyout', '%s.key' % name, '-out', '%s.csr' % name, cwd=directory)
    _openssl('x509', '-req', '-in', '%s.csr' % name, '-CA', '%s.crt' % ca, '-CAkey', '%s.key' % ca,
             '-CAcreateserial', '-days', '2', '-out', '%s.crt' % name, cwd=directory)
    os.chmod(os.path.join(directory, '%s.key' % name), 0o600)


@pytest.fixture(scope='module')
def ssl_server():
    directory = tempfile.mkdtemp(prefix='cerniq-pg-ssl-')
    os.chmod(directory, 0o755)  # the server (the postgres OS user when run as root) reads server-files/
    try:
        _make_ca(directory, 'ca')
        _make_ca(directory, 'other_ca')
        _make_cert(directory, 'server', '127.0.0.1', 'ca')
        _make_cert(directory, 'client', 'certuser', 'ca')
        _make_cert(directory, 'stranger', 'certuser', 'other_ca')
        server_files = os.path.join(directory, 'server-files')
        os.mkdir(server_files)
        for name in ('server.crt', 'server.key', 'ca.crt'):
            shutil.copy(os.path.join(directory, name), server_files)
        if os.geteuid() == 0:
            import pwd
            owner = pwd.getpwnam('postgres')
            for name in os.listdir(server_files) + ['']:
                os.chown(os.path.join(server_files, name), owner.pw_uid, owner.pw_gid)
        settings = dict(ssl='on', ssl_cert_file="'%s/server.crt'" % server_files,
                        ssl_key_file="'%s/server.key'" % server_files, ssl_ca_file="'%s/ca.crt'" % server_files)
        with PostgresServer(settings=settings) as server:
            hba = os.path.join(server.datadir, 'pg_hba.conf')
            with open(hba) as handle:
                rules = handle.read()
            with open(hba, 'w') as handle:
                handle.write('hostssl all certuser 127.0.0.1/32 cert\n'
                             'hostnossl all cerniq 127.0.0.1/32 reject\n' + rules)
            server.psql('CREATE ROLE certuser LOGIN')
            server.psql('SELECT pg_reload_conf()')
            server.files = directory
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_pgsslmode(ssl_server):
    args = dict(ssl_server.params(), **READ)   # the app role is rejected without SSL on this server
    _ok(run_module('pg_health_info', args, env=dict(PGSSLMODE='require')))
    _fails(run_module('pg_health_info', args, env=dict(PGSSLMODE='disable')), 'no encryption')


def test_pgsslrootcert(ssl_server):
    args = dict(ssl_server.params(), ssl_mode='verify-ca', **READ)
    _ok(run_module('pg_health_info', args, env=dict(PGSSLROOTCERT=os.path.join(ssl_server.files, 'ca.crt'))))
    _fails(run_module('pg_health_info', args, env=dict(PGSSLROOTCERT=os.path.join(ssl_server.files, 'other_ca.crt'))),
           'certificate verify failed')


def _cert_args(server):
    return dict(login_host='127.0.0.1', login_port=server.port, login_db='cerniq', login_user='certuser',
                ssl_mode='require', **READ)


def test_pgsslcert(ssl_server):
    files = ssl_server.files
    args = dict(_cert_args(ssl_server), ssl_key=os.path.join(files, 'client.key'))
    _ok(run_module('pg_health_info', args, env=dict(PGSSLCERT=os.path.join(files, 'client.crt'))))
    _fails(run_module('pg_health_info', args, env=dict(PGSSLCERT=os.path.join(files, 'missing.crt'))), 'certuser')


def test_pgsslkey(ssl_server):
    files = ssl_server.files
    args = dict(_cert_args(ssl_server), ssl_cert=os.path.join(files, 'client.crt'))
    _ok(run_module('pg_health_info', args, env=dict(PGSSLKEY=os.path.join(files, 'client.key'))))
    _fails(run_module('pg_health_info', args, env=dict(PGSSLKEY=os.path.join(files, 'stranger.key'))), 'certuser')
