# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One PostgreSQL connection layer for every module, job and test of the collection.

The engine part (``connect_postgres``) is plain Python: it raises
``PostgresConnectError`` with a one-line message naming the server and the
cause. ``postgres_connect_module`` is the Ansible front end: it turns missing
libraries and connection failures into ``fail_json`` messages, never tracebacks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import traceback

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option

PSYCOPG2_IMPORT_ERROR = None
try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - exercised by the missing-library test
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()


# The connection options every PostgreSQL module shares (documented once in the
# cerniq.ops.postgres doc fragment).
POSTGRES_COMMON_ARGS = dict(
    login_host=dict(type='str', aliases=['db_host']),
    login_port=dict(type='int', aliases=['db_port']),  # no default: PGPORT, then libpq's 5432
    login_unix_socket=dict(type='str', aliases=['db_unix_socket']),
    login_db=dict(type='str', aliases=['db', 'database']),
    login_user=dict(type='str', aliases=['db_user']),
    login_password=dict(type='str', no_log=True, aliases=['db_password']),
    ssl_mode=dict(type='str', choices=['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']),
    ssl_rootcert=dict(type='path', aliases=['ca_cert']),
    ssl_cert=dict(type='path'),
    ssl_key=dict(type='path', no_log=False),
    connect_timeout=dict(type='str', default='10s'),
    application_name=dict(type='str', default='cerniq.ops'),
)

# libpq environment variables honoured for options left unset.
POSTGRES_ENV_FALLBACKS = dict(
    login_host=('PGHOST',),
    login_port=('PGPORT',),
    login_db=('PGDATABASE',),
    login_user=('PGUSER',),
    login_password=('PGPASSWORD',),
    ssl_mode=('PGSSLMODE',),
    ssl_rootcert=('PGSSLROOTCERT',),
    ssl_cert=('PGSSLCERT',),
    ssl_key=('PGSSLKEY',),
)

_CONNECT_KEYWORDS = dict(
    login_db='dbname',
    login_user='user',
    login_password='password',
    ssl_mode='sslmode',
    ssl_rootcert='sslrootcert',
    ssl_cert='sslcert',
    ssl_key='sslkey',
    connect_timeout='connect_timeout',
    application_name='application_name',
)


# What a query can raise (nothing to catch when psycopg2 is missing: connecting already failed then).
POSTGRES_ERRORS = (psycopg2.Error,) if HAS_PSYCOPG2 else ()


def error_line(error):
    """The first non-empty line of a server error, for one-line task failures."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else error.__class__.__name__


class PostgresConnectError(Exception):
    """Connection failed; the message is one line naming the server and the cause."""


def postgres_argument_spec():
    """A fresh copy of the connection options, with env fallbacks, for a module's argument_spec."""
    from ansible.module_utils.basic import env_fallback

    spec = {}
    for name, option in POSTGRES_COMMON_ARGS.items():
        option = dict(option)
        if name in POSTGRES_ENV_FALLBACKS and 'default' not in option:
            option['fallback'] = (env_fallback, list(POSTGRES_ENV_FALLBACKS[name]))
        spec[name] = option
    return spec


def _int_between(value, low, high):
    """``value`` as an int when it is one within [low, high], else None."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if not isinstance(value, bool) and low <= number <= high else None


def check_connection_params(params):
    """Bounds of the connection options, checked before connecting; PostgresConnectError (one line)."""
    port = params.get('login_port')
    if port not in (None, '') and _int_between(port, 1, 65535) is None:
        raise PostgresConnectError('login_port must be a TCP port (1-65535), got %r' % (port,))
    connect_timeout_seconds(params)
    for option in _CONNECT_KEYWORDS:
        value = params.get(option)
        if isinstance(value, str) and '\x00' in value:
            raise PostgresConnectError('%s must not contain a NUL byte' % option)


def connect_timeout_seconds(params):
    """Whole seconds libpq waits for the connection: ``connect_timeout`` (a duration, 1s to 1h; 10s unset).

    libpq waits forever with 0 and takes whole seconds, so a bound is always set and rounded up.
    """
    value = params.get('connect_timeout')
    try:
        seconds = duration_option(POSTGRES_COMMON_ARGS['connect_timeout']['default'] if value is None else value,
                                  'connect_timeout', 1, 3600)
    except DurationError as error:
        raise PostgresConnectError(str(error))
    return int(math.ceil(seconds))


def connection_kwargs(params):
    """libpq keywords from module-style params (None values left out)."""
    kwargs = {}
    if params.get('login_unix_socket'):
        kwargs['host'] = params['login_unix_socket']
    elif params.get('login_host'):
        kwargs['host'] = params['login_host']
    if params.get('login_port'):
        kwargs['port'] = int(params['login_port'])
    for option, keyword in _CONNECT_KEYWORDS.items():
        value = params.get(option, POSTGRES_COMMON_ARGS[option].get('default'))
        if value is not None and value != '':
            kwargs[keyword] = value
    kwargs['connect_timeout'] = connect_timeout_seconds(params)
    return kwargs


def describe_server(params):
    """``user@host:port/db`` for messages; never includes the password."""
    host = params.get('login_unix_socket') or params.get('login_host') or os.environ.get('PGHOST') or 'local socket'
    port = params.get('login_port') or os.environ.get('PGPORT') or 5432
    user = params.get('login_user') or os.environ.get('PGUSER') or ''
    database = params.get('login_db') or os.environ.get('PGDATABASE') or user
    prefix = '%s@' % user if user else ''
    return '%s%s:%s/%s' % (prefix, host, port, database)


def _one_line(error):
    text = str(error).strip().splitlines()
    text = [line.strip() for line in text if line.strip()]
    if not text:
        return error.__class__.__name__
    # libpq repeats the server address on a first line; keep the cause.
    message = text[0]
    for line in text:
        lowered = line.lower()
        if 'fatal' in lowered or 'refused' in lowered or 'timeout' in lowered or 'does not exist' in lowered:
            message = line
            break
    return message.replace('FATAL:  ', '').replace('FATAL: ', '')


def classify_connect_error(error):
    """A short cause for a connection failure: 'authentication failed', 'unreachable', ..."""
    text = str(error).lower()
    if 'password authentication failed' in text or 'no password supplied' in text \
            or 'authentication failed' in text or 'no pg_hba.conf entry' in text:
        return 'authentication failed'
    if 'does not exist' in text and 'database' in text:
        return 'database does not exist'
    if 'timeout' in text:
        return 'connection timed out'
    if 'could not connect' in text or 'connection refused' in text or 'could not translate host' in text \
            or 'no such file or directory' in text:
        return 'server unreachable'
    return 'connection failed'


def connect_postgres(params, autocommit=True):
    """Open a psycopg2 connection from module-style params.

    Raises ``PostgresConnectError`` (one line, no password) on any failure.
    """
    if not HAS_PSYCOPG2:
        raise PostgresConnectError('the Python library psycopg2 (or psycopg2-binary) is not installed')
    check_connection_params(params)
    kwargs = connection_kwargs(params)
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.Error as error:
        raise PostgresConnectError('cannot connect to PostgreSQL %s: %s (%s)' % (
            describe_server(params), classify_connect_error(error), _one_line(error)))
    conn.autocommit = autocommit
    return conn


def server_version(conn):
    """Server version as an integer, e.g. 150004."""
    return conn.server_version


def postgres_connect_module(module, autocommit=True):
    """Connect for an Ansible module or fail with a one-line message."""
    if not HAS_PSYCOPG2:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib('psycopg2 (or psycopg2-binary)'), exception=PSYCOPG2_IMPORT_ERROR)
    try:
        return connect_postgres(module.params, autocommit=autocommit)
    except PostgresConnectError as error:
        module.fail_json(msg=str(error))
