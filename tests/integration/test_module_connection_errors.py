"""Every module: unreachable server, wrong password and missing Python library give one clear line.

Each module is run for real (as Ansible runs it) against a closed port, against a
server with a password given the wrong one, and with the client library hidden
from its interpreter. None may print a traceback or the password.
"""

import glob
import os

import pytest

from cerniq_testkit.ansible_run import REPO, run_module
from cerniq_testkit.servers import free_port

# Minimal valid arguments of each module, besides the connection options.
POSTGRES_MODULES = {
    'approval_tasks': dict(state='released'),
    'approval_tasks_info': dict(),
    'capacity_info': dict(),
    'cerniq_queue_stats': dict(queues={'q': {'wait': 1}}),
    'cerniq_schema': dict(migrations=[dict(name='001_x.sql', sql='SELECT 1')]),
    'cerniq_synthetic_data': dict(inject_redis=False),
    'import_batch': dict(state='cancelled'),
    'import_batch_info': dict(),
    'incident_info': dict(prometheus_url='http://127.0.0.1:1', start='2026-01-01T00:00:00Z'),
    'pg_archive': dict(source_table='t', older_than='1 day'),
    'pg_health_info': dict(sections=['connections']),
    'pg_maintenance': dict(tasks=[dict(action='analyze', table='t')]),
    'quality_scores': dict(state='reset'),
    'quality_scores_info': dict(),
}
REDIS_MODULES = {
    'bullmq_queue_info': dict(names=['q']),
    'bullmq_queue': dict(name='q'),
    'circuit_breaker': dict(sources=['anaf'], state='closed'),
    'circuit_breaker_info': dict(sources=['anaf']),
    'redis_keys': dict(patterns=['cache:*']),
    'redis_keys_info': dict(patterns=['cache:*']),
}
# Modules that connect only for part of their work, tested in their own files.
EXEMPT = {
    'pg_backup_verify': 'connects only for the restore check; covered in test_pg_backup_verify.py',
    'prometheus_rules': 'talks to Prometheus over HTTP (or a signal), not PostgreSQL or Redis; covered in '
                        'test_prometheus_rules.py',
    'alertmanager_silence': 'talks to the Alertmanager HTTP API; covered in test_alertmanager_silence.py',
    'alertmanager_silence_info': 'talks to the Alertmanager HTTP API; covered in test_alertmanager_silence.py',
    'signoz_dashboard': 'talks to the SigNoz HTTP API, not PostgreSQL or Redis; covered in test_signoz_dashboard.py',
    'worker_container': 'talks to podman, the Docker Engine API or compose, not PostgreSQL or Redis; covered in '
                        'test_worker_container.py (test_bad_input_is_one_line)',
}
SECRET = 'a-wrong-secret-9f8e'


def test_every_module_is_covered():
    modules = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(REPO, 'plugins/modules/*.py'))}
    assert modules == set(POSTGRES_MODULES) | set(REDIS_MODULES) | set(EXEMPT)


def _assert_one_line(result, *expected):
    assert result.failed, result
    message = result['msg']
    assert '\n' not in message.strip() and 'Traceback' not in message, message
    for text in expected:
        assert text in message, message
    assert SECRET not in str(dict(result)) + result.stderr


@pytest.mark.parametrize('module', sorted(POSTGRES_MODULES))
def test_postgres_modules_errors(module, pg_db):
    args = dict(POSTGRES_MODULES[module])
    _assert_one_line(run_module(module, dict(pg_db, login_password=SECRET, **args)),
                     'authentication failed', pg_db['login_db'])
    _assert_one_line(run_module(module, dict(pg_db, login_port=free_port(), **args)), 'server unreachable')


@pytest.mark.parametrize('module', sorted(REDIS_MODULES))
def test_redis_modules_errors(module, redis_auth_server):
    args = dict(REDIS_MODULES[module])
    _assert_one_line(run_module(module, dict(redis_auth_server.params(redis_password=SECRET), **args)),
                     'authentication failed', '127.0.0.1:%d' % redis_auth_server.port)
    _assert_one_line(run_module(module, dict(redis_host='127.0.0.1', redis_port=free_port(),
                                             redis_socket_timeout='2s', **args)), 'server unreachable')


@pytest.fixture(scope='module')
def hidden_libraries(tmp_path_factory):
    """A directory that shadows psycopg2 and redis with modules that fail to import."""
    base = tmp_path_factory.mktemp('hide')
    for name in ('psycopg2', 'redis'):
        package = base / name
        package.mkdir()
        (package / '__init__.py').write_text('raise ImportError("hidden by the test")\n')
    return str(base)


@pytest.mark.parametrize('module', sorted(POSTGRES_MODULES) + sorted(REDIS_MODULES))
def test_missing_library_is_named(module, hidden_libraries, pg_db):
    from cerniq_testkit.ansible_run import collections_root
    args = dict(POSTGRES_MODULES[module] if module in POSTGRES_MODULES else REDIS_MODULES[module])
    if module in POSTGRES_MODULES:
        args.update(pg_db)
    result = run_module(module, args, env={'PYTHONPATH': hidden_libraries + os.pathsep + collections_root()})
    library = 'psycopg2' if module in POSTGRES_MODULES else 'redis'
    _assert_one_line(result, 'Failed to import the required Python library (%s' % library)
