"""Unit tests of the PostgreSQL connection helpers that need no server."""

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils import pg_connection as pg
from ansible_collections.cerniq.ops.plugins.module_utils import pg_sql


@pytest.mark.parametrize('text, expected', [
    ('t', (None, 't')),
    ('public.t', ('public', 't')),
    ('"my.schema"."odd ""q"', ('my.schema', 'odd "q')),
    ('"a; DROP TABLE x"', (None, 'a; DROP TABLE x')),
    ('MixedCase', (None, 'MixedCase')),
])
def test_split_qualified_name(text, expected):
    assert pg_sql.split_qualified_name(text) == expected


@pytest.mark.parametrize('text', ['', ' ', 'a.b.c', '"unterminated', 'a.', '.b', 'a"b"'])
def test_split_qualified_name_rejects(text):
    with pytest.raises(ValueError):
        pg_sql.split_qualified_name(text)


def test_quote_ident_escapes_quotes_and_qualifies():
    assert pg_sql.quote_ident('t') == '"t"'
    assert pg_sql.quote_ident(('s', 'we"ird; name')) == '"s"."we""ird; name"'
    with pytest.raises(ValueError):
        pg_sql.quote_ident('')
    with pytest.raises(ValueError):
        pg_sql.quote_ident('nul\x00byte')


def test_connection_kwargs_prefers_socket_and_drops_unset():
    kwargs = pg.connection_kwargs(dict(login_host='db', login_unix_socket='/run/pg', login_port=5433,
                                       login_user='u', login_password=None, login_db='d', ssl_mode='require'))
    assert kwargs == dict(host='/run/pg', port=5433, user='u', dbname='d', sslmode='require',
                          connect_timeout=10, application_name='cerniq.ops')


def test_describe_server_never_shows_password():
    text = pg.describe_server(dict(login_host='db', login_port=5432, login_user='u', login_db='d',
                                   login_password='hunter2'))
    assert text == 'u@db:5432/d'
    assert 'hunter2' not in text


@pytest.mark.parametrize('message, cause', [
    ('FATAL:  password authentication failed for user "x"', 'authentication failed'),
    ('connection to server at "1.2.3.4", port 5 failed: Connection refused', 'server unreachable'),
    ('FATAL:  database "nope" does not exist', 'database does not exist'),
    ('timeout expired', 'connection timed out'),
])
def test_classify_connect_error(message, cause):
    assert pg.classify_connect_error(Exception(message)) == cause


def test_describe_server_names_the_port_from_pgport(monkeypatch):
    monkeypatch.setenv('PGPORT', '6543')
    assert pg.describe_server(dict(login_host='db', login_user='u', login_db='d')) == 'u@db:6543/d'
    assert pg.connection_kwargs(dict(login_host='db')).get('port') is None  # libpq reads PGPORT itself


@pytest.mark.parametrize('params, option', [
    (dict(login_port=0), 'login_port'),
    (dict(login_port=65536), 'login_port'),
    (dict(login_port='x'), 'login_port'),
    (dict(connect_timeout='0s'), 'connect_timeout must be between 1s and 1h'),
    (dict(connect_timeout='-1s'), 'connect_timeout'),
    (dict(connect_timeout='2h'), 'connect_timeout must be between 1s and 1h'),
    (dict(connect_timeout=10), 'connect_timeout: 10 is not a duration with a unit'),
    (dict(connect_timeout='10'), "connect_timeout: '10' is not a duration with a unit"),
    (dict(login_db='a\x00b'), 'login_db'),
])
def test_connection_bounds_checked_before_connecting(params, option):
    with pytest.raises(pg.PostgresConnectError, match=option):
        pg.connect_postgres(dict(dict(login_host='127.0.0.1', login_port=1), **params))
