"""The maintenance role's job definitions, rendered by the role itself and run by its runner.

The role runs on localhost with ``--tags maintenance_configure`` into a private directory (its
assert, the job configurations and the credentials file); the runner then runs the
rendered weekly and backup jobs against a throwaway PostgreSQL. Installing packages,
users and timers is left to the Molecule scenario.
"""

import grp
import json
import os
import pwd
import subprocess
import sys

import pytest
import yaml

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from cerniq_testkit.ansible_run import REPO, collections_root, run_playbook

RUNNER = os.path.join(REPO, 'roles', 'maintenance', 'files', 'cerniq_maintenance.py')


def _apply(tmp_path, pg_db, extra_vars=None):
    role_vars = {
        'maintenance_config_dir': str(tmp_path / 'etc'),
        'maintenance_log_dir': str(tmp_path),
        'maintenance_lock_dir': str(tmp_path),
        'maintenance_textfile_dir': str(tmp_path / 'textfile'),
        'maintenance_user': pwd.getpwuid(os.getuid()).pw_name,
        'maintenance_group': grp.getgrgid(os.getgid()).gr_name,
        'maintenance_postgres': {k: v for k, v in pg_db.items() if k != 'login_password'},
        'maintenance_postgres_password': pg_db['login_password'],
    }
    role_vars.update(extra_vars or {})
    (tmp_path / 'etc').mkdir(exist_ok=True)
    (tmp_path / 'textfile').mkdir(exist_ok=True)
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Apply the maintenance role',
        'hosts': 'localhost',
        'gather_facts': False,
        'roles': [{'role': 'cerniq.ops.maintenance', 'vars': role_vars}],
    }]))
    return run_playbook(str(playbook), extra_args=['--tags', 'maintenance_configure'])


def _job(tmp_path, name):
    return json.loads((tmp_path / 'etc' / ('%s.json' % name)).read_text())


def _run(tmp_path, job):
    return subprocess.run([sys.executable, RUNNER, '--config', str(tmp_path / 'etc' / ('%s.json' % job)),
                           '--lib', collections_root()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600, check=False)


def test_no_backup_location_is_refused_loudly(tmp_path, pg_db):
    result = _apply(tmp_path, pg_db)
    assert result.returncode != 0
    assert 'no backup location is configured' in result.stdout
    assert not (tmp_path / 'etc' / 'weekly.json').exists()


def test_stating_that_another_tool_verifies_is_accepted(tmp_path, pg_db):
    result = _apply(tmp_path, pg_db, {'maintenance_weekly_steps': {
        'auto_maintenance': True, 'analyze': True, 'orphan_check': True, 'backup_verify': False}})
    assert result.returncode == 0, result.stdout
    steps = {step['name']: step for step in _job(tmp_path, 'weekly')['steps']}
    assert steps['backup_verify']['enabled'] is False
    assert not (tmp_path / 'etc' / 'backup.json').exists()


@pytest.fixture
def cerniq_db(pg_conn):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    return pg_conn


def test_defaults_dump_nightly_verify_weekly_and_analyze_the_database(tmp_path, pg_db, cerniq_db):
    backups = tmp_path / 'backups'
    backups.mkdir()
    result = _apply(tmp_path, pg_db, {'maintenance_backup_dump': True, 'maintenance_backup_path': str(backups)})
    assert result.returncode == 0, result.stdout
    weekly = {step['name']: step for step in _job(tmp_path, 'weekly')['steps']}
    assert weekly['backup_verify']['enabled'] is True
    assert weekly['backup_verify']['options']['path'] == str(backups)
    assert weekly['analyze']['type'] == 'analyze_database'
    assert [step['type'] for step in _job(tmp_path, 'backup')['steps']] == ['pg_dump']

    dumped = _run(tmp_path, 'backup')
    assert dumped.returncode == 0, dumped.stdout
    assert [p.name.startswith(pg_db['login_db'] + '-') for p in backups.iterdir()] == [True]
    weekly_run = _run(tmp_path, 'weekly')
    assert weekly_run.returncode == 0, weekly_run.stdout
    assert 'step backup_verify: ok' in weekly_run.stdout
    metrics = (tmp_path / 'textfile' / 'cerniq_backup.prom').read_text()
    assert 'cerniq_backup_verify_success{task="backup"} 1' in metrics
    with cerniq_db.cursor() as cur:
        cur.execute('SELECT relname FROM pg_stat_user_tables WHERE analyze_count = 0')
        assert cur.fetchall() == []

    # Turning the dump off again removes its job.
    result = _apply(tmp_path, pg_db, {'maintenance_backup_path': str(backups)})
    assert result.returncode == 0, result.stdout
    assert not (tmp_path / 'etc' / 'backup.json').exists()


def test_a_password_with_spaces_at_either_end_quotes_and_a_line_break_logs_in(tmp_path, pg_server, pg_db, cerniq_db):
    """The credentials file keeps the password exactly: the nightly dump logs in with it."""
    import psycopg2
    password = ' sp\'ace "q" \\ $x #\nsecond line '
    user = 'maint_%s' % os.getpid()
    admin = psycopg2.connect(pg_server.dsn(pg_db['login_db'], superuser=True))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute('DROP ROLE IF EXISTS %s' % user)
        cur.execute('CREATE ROLE %s LOGIN PASSWORD %%s IN ROLE cerniq' % user, (password,))
    try:
        backups = tmp_path / 'backups'
        backups.mkdir()
        connection = dict(pg_db, login_user=user, login_password=password)
        result = _apply(tmp_path, connection, {'maintenance_backup_dump': True,
                                               'maintenance_backup_path': str(backups)})
        assert result.returncode == 0, result.stdout
        assert password not in result.stdout and 'sp\'ace' not in result.stdout
        dumped = _run(tmp_path, 'backup')
        assert dumped.returncode == 0, dumped.stdout
        assert len(list(backups.iterdir())) == 1
        # A line the role did not write, broken by hand: one line naming it, nothing done.
        credentials = tmp_path / 'etc' / 'credentials'
        credentials.write_text(credentials.read_text().replace('PGPASSWORD="', 'PGPASSWORD="\\q'))
        broken = _run(tmp_path, 'backup')
        assert broken.returncode == 2, broken.stdout
        assert broken.stdout.count('\n') == 1 and 'line 4: PGPASSWORD is not a JSON string; nothing done' in broken.stdout
        assert len(list(backups.iterdir())) == 1
    finally:
        with admin.cursor() as cur:
            cur.execute('DROP OWNED BY %s; DROP ROLE %s' % (user, user))
        admin.close()
