"""Backup verification with real dumps: a good one restores, corrupted and stale ones are caught."""

import os
import subprocess
import time

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils import pg_backup
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres
from cerniq_testkit.ansible_run import run_module


def _dump(pg_server, database, path, fmt):
    env = dict(os.environ, PGPASSWORD='postgres-test-secret')
    subprocess.run([os.path.join(pg_server.bindir, 'pg_dump'), '-h', '127.0.0.1', '-p', str(pg_server.port),
                    '-U', 'postgres', '-F', fmt, '-f', str(path), database], check=True, env=env)


@pytest.fixture
def source(pg_server, pg_db, pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute('CREATE TABLE bronze_contacts (id bigint primary key, name text)')
        cur.execute("INSERT INTO bronze_contacts SELECT g, 'c' || g FROM generate_series(1, 500) g")
        cur.execute('CREATE TABLE approval_tasks (id bigint primary key)')
        cur.execute('INSERT INTO approval_tasks SELECT generate_series(1, 40)')
    return pg_server.params(database=pg_db['login_db'], superuser=True)


def _databases(pg_server):
    return pg_server.psql('SELECT datname FROM pg_database', 'postgres')


def test_good_custom_dump_restores_and_counts_match(pg_server, pg_db, source, tmp_path):
    _dump(pg_server, pg_db['login_db'], tmp_path / 'cerniq-1.dump', 'c')
    prom = tmp_path / 'backup.prom'
    result = run_module('pg_backup_verify', dict(source, path=str(tmp_path), pattern='*.dump', max_age='1h', restore=True,
                                                 tables=['bronze_contacts', 'public.approval_tasks'],
                                                 textfile_path=str(prom), scratch_db='restore_check_good'))
    assert not result.failed, result
    assert result['verified'] and result['restored'] and result['format'] == 'custom'
    assert result['entries'] > 0
    assert result['row_counts']['bronze_contacts'] == {'backup': 500, 'source': 500}
    assert result['row_counts']['public.approval_tasks'] == {'backup': 40, 'source': 40}
    assert 'restore_check_good' not in _databases(pg_server)
    text = prom.read_text()
    assert 'cerniq_backup_verify_success{task="backup"} 1' in text
    assert 'cerniq_backup_last_success_timestamp_seconds' in text
    assert result['checks'] == {'found': True, 'fresh': True, 'readable': True, 'restored': True}
    for check in ('found', 'fresh', 'readable', 'restored'):
        assert 'cerniq_backup_verify_check{check="%s",task="backup"} 1' % check in text
    assert 'postgres-test-secret' not in str(result)


def test_corrupted_dump_fails_and_metric_keeps_last_success(pg_server, pg_db, source, tmp_path):
    dump = tmp_path / 'cerniq.dump'
    _dump(pg_server, pg_db['login_db'], dump, 'c')
    prom = tmp_path / 'backup.prom'
    assert not run_module('pg_backup_verify', dict(path=str(dump), textfile_path=str(prom))).failed
    good_success = [line for line in prom.read_text().splitlines()
                    if line.startswith('cerniq_backup_last_success_timestamp_seconds')]
    data = dump.read_bytes()
    dump.write_bytes(data[:len(data) // 3])
    result = run_module('pg_backup_verify', dict(source, path=str(dump), restore=True, textfile_path=str(prom),
                                                 scratch_db='restore_check_bad'))
    assert result.failed
    assert 'backup verification failed' in result['msg']
    assert result['verified'] is False
    text = prom.read_text()
    assert 'cerniq_backup_verify_success{task="backup"} 0' in text
    # The alert rules tell an unreadable backup from a stale or unrestorable one by this label.
    assert result['checks'] == {'found': True, 'readable': False}
    assert 'cerniq_backup_verify_check{check="readable",task="backup"} 0' in text
    assert 'check="restored"' not in text  # a backup that cannot be read is not restored
    assert [line for line in text.splitlines()
            if line.startswith('cerniq_backup_last_success_timestamp_seconds')] == good_success
    assert 'restore_check_bad' not in _databases(pg_server)


def test_truncated_plain_sql_is_caught_and_complete_one_passes(pg_server, pg_db, source, tmp_path):
    dump = tmp_path / 'cerniq.sql'
    _dump(pg_server, pg_db['login_db'], dump, 'p')
    result = run_module('pg_backup_verify', dict(source, path=str(dump), restore=True, tables=['bronze_contacts'],
                                                 scratch_db='restore_check_plain'))
    assert result['verified'] and result['format'] == 'plain', result
    assert result['row_counts']['bronze_contacts']['backup'] == 500
    dump.write_bytes(dump.read_bytes()[:-200])
    result = run_module('pg_backup_verify', dict(path=str(dump), fail_on_problem=False))
    assert not result.failed and result['verified'] is False
    assert 'truncated' in result['problems'][0]


def test_stale_backup_and_rows_missing_from_backup(pg_server, pg_db, source, tmp_path, pg_conn):
    dump = tmp_path / 'old.dump'
    _dump(pg_server, pg_db['login_db'], dump, 'c')
    old = time.time() - 3 * 86400
    os.utime(dump, (old, old))
    with pg_conn.cursor() as cur:
        cur.execute("INSERT INTO bronze_contacts SELECT g, 'n' FROM generate_series(501, 1000) g")
    result = run_module('pg_backup_verify', dict(source, path=str(dump), max_age='26h', restore=True,
                                                 tables=['bronze_contacts', 'no_such_table'],
                                                 fail_on_problem=False, scratch_db='restore_check_stale'))
    problems = ' | '.join(result['problems'])
    assert result['checks'] == {'found': True, 'fresh': False, 'readable': True, 'restored': False}
    assert 'old (more than max_age 1d2h)' in problems
    assert 'bronze_contacts: 500 rows in the backup, 1000 in the source' in problems
    assert 'no_such_table is missing from the restored backup' in problems


def test_check_mode_reads_but_writes_nothing(pg_server, pg_db, source, tmp_path):
    _dump(pg_server, pg_db['login_db'], tmp_path / 'a.dump', 'd')
    prom = tmp_path / 'm.prom'
    result = run_module('pg_backup_verify', dict(source, path=str(tmp_path / 'a.dump'), restore=True,
                                                 textfile_path=str(prom), scratch_db='restore_check_cm'),
                        check_mode=True)
    assert result['verified'] and result['format'] == 'directory' and result['restored'] is False
    assert not prom.exists()


def test_listing_command_picks_newest(pg_server, pg_db, source, tmp_path):
    older, newer = tmp_path / 'one.dump', tmp_path / 'two.dump'
    _dump(pg_server, pg_db['login_db'], older, 'c')
    _dump(pg_server, pg_db['login_db'], newer, 't')
    os.utime(older, (time.time() - 100, time.time() - 100))
    lister = tmp_path / 'list.sh'
    lister.write_text('#!/bin/sh\necho %s\necho %s\necho /nonexistent\n' % (older, newer))
    lister.chmod(0o755)
    result = run_module('pg_backup_verify', dict(list_command=str(lister)))
    assert result['backup'] == str(newer) and result['format'] == 'tar' and result['verified']


def test_bad_input_is_a_clear_error(tmp_path):
    result = run_module('pg_backup_verify', dict(path=str(tmp_path / 'missing')))
    assert result.failed and 'does not exist' in result['msg']
    (tmp_path / 'empty').mkdir()
    prom = tmp_path / 'none.prom'
    result = run_module('pg_backup_verify', dict(path=str(tmp_path / 'empty'), textfile_path=str(prom)))
    assert result.failed and 'no backup found' in result['msg']
    assert result['checks'] == {'found': False}
    assert 'cerniq_backup_verify_check{check="found",task="backup"} 0' in prom.read_text()
    result = run_module('pg_backup_verify', dict())
    assert result.failed and 'one of the following is required' in result['msg']


@pytest.mark.parametrize('textfile_path', ['backup.prom', 'True', 'metrics/backup.prom', '/tmp/backup.txt'])
def test_textfile_path_is_an_absolute_prom_file(tmp_path, monkeypatch, textfile_path):
    """A 10x hostile hunt wrote metrics files named 'True' and '1e9 years' into the directory it ran from."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'empty').mkdir()
    result = run_module('pg_backup_verify', dict(path=str(tmp_path / 'empty'), textfile_path=textfile_path))
    assert result.failed and 'textfile_path must be an absolute path ending in .prom' in result['msg'], result
    assert sorted(os.listdir(tmp_path)) == ['empty'] and not os.path.exists(textfile_path)


def test_wrong_password_is_one_line(pg_server, pg_db, source, tmp_path):
    _dump(pg_server, pg_db['login_db'], tmp_path / 'a.dump', 'c')
    params = dict(source, login_password='not-the-password')
    result = run_module('pg_backup_verify', dict(params, path=str(tmp_path / 'a.dump'), restore=True))
    assert result.failed and 'authentication failed' in result['msg']
    assert result['checks'] == {'found': True, 'readable': True, 'restored': False}
    assert 'Traceback' not in result['msg'] and 'not-the-password' not in result['msg']


def test_scratch_database_left_in_use_is_dropped_by_force(pg_server, pg_db, source):
    """The scratch database is dropped plainly first (that stops autovacuum workers, which a forced
    drop refuses to terminate for a role that is not superuser); a session still in it after the
    plain drop's 5 s wait, such as a restore client left behind, is then terminated by the forced one."""
    admin = connect_postgres(source)
    try:
        with admin.cursor() as cur:
            cur.execute('CREATE DATABASE restore_check_in_use')
        left_behind = connect_postgres(dict(source, login_db='restore_check_in_use'))
        started = time.monotonic()
        pg_backup._drop_scratch(admin, 'restore_check_in_use')  # pylint: disable=protected-access
        assert time.monotonic() - started >= 4  # the plain DROP waited, then the forced one ran
        assert 'restore_check_in_use' not in _databases(pg_server)
        left_behind.close()
    finally:
        admin.close()
