"""The maintenance playbooks (index_report, weekly, daily) run by ansible-playbook against a
test database holding small CERNIQ-named tables."""

import os
import subprocess
import time

import psycopg2
import pytest

from cerniq_testkit.ansible_run import REPO, run_playbook

PLAYBOOKS = os.path.join(REPO, 'playbooks')


def _q(conn, sql, args=None):
    cur = conn.cursor()
    cur.execute(sql, args)
    rows = cur.fetchall() if cur.description else None
    cur.close()
    return rows


@pytest.fixture
def cerniq_tables(pg_conn):
    _q(pg_conn, """
        CREATE TABLE bronze_contacts (id bigint PRIMARY KEY, created_at timestamptz NOT NULL,
                                      processing_status text NOT NULL, email text);
        CREATE INDEX bronze_contacts_email ON bronze_contacts (email);
        CREATE TABLE silver_companies (id bigint PRIMARY KEY, source_bronze_id bigint, name text);
        CREATE TABLE gold_companies (id bigint PRIMARY KEY, name text);
        CREATE TABLE approval_tasks (id bigint PRIMARY KEY, status text);
        CREATE TABLE silver_enrichment_log (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, msg text);
        CREATE TABLE silver_enrichment_log_archive (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, msg text);
        INSERT INTO bronze_contacts SELECT g, now() - interval '40 days', 'promoted', 'e' || g
            FROM generate_series(1, 5) g;
        INSERT INTO bronze_contacts SELECT g, now() - interval '40 days', 'pending', 'e' || g
            FROM generate_series(6, 8) g;
        INSERT INTO bronze_contacts SELECT g, now() - interval '1 day', 'promoted', 'e' || g
            FROM generate_series(9, 10) g;
        INSERT INTO silver_companies VALUES (1, 1, 'a'), (2, 9, 'b'), (3, 777, 'orphan'), (4, 778, 'orphan'),
                                            (5, NULL, 'none');
        INSERT INTO gold_companies VALUES (1, 'a');
        INSERT INTO approval_tasks VALUES (1, 'open');
        INSERT INTO silver_enrichment_log SELECT g, now() - interval '100 days', 'old' FROM generate_series(1, 4) g;
        INSERT INTO silver_enrichment_log SELECT g, now() - interval '1 day', 'new' FROM generate_series(5, 6) g;
        ANALYZE;
    """)
    return pg_conn


def _last_vacuum(conn, table):
    return _q(conn, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = %s", (table,))[0][0]


def test_index_report_playbook(pg_db, cerniq_tables):
    with pytest.raises(psycopg2.Error):
        _q(cerniq_tables, 'CREATE UNIQUE INDEX CONCURRENTLY silver_companies_name_ccnew ON silver_companies (name)')
    proc = run_playbook(os.path.join(PLAYBOOKS, 'index_report.yml'), extra_vars=dict(
        cerniq_postgres=pg_db, cerniq_index_report_thresholds=dict(unused_index_min_bytes=0)))
    out = proc.stdout
    assert proc.returncode == 0, out
    assert '### Index usage (top 20 by scans)' in out
    assert '| public.bronze_contacts_email | bronze_contacts |' in out
    assert '| public.silver_companies_name_ccnew | silver_companies | ccnew |' in out
    assert 'drop_invalid_index' in out
    # unused list: the plain index only, never the primary keys
    unused = out.split('### Unused indexes')[1].split('###')[0]
    assert 'bronze_contacts_email' in unused and '_pkey' not in unused
    assert '"changed": true' not in out and 'changed=0' in out


def _dump(pg_server, pg_db, path):
    env = dict(os.environ, PGPASSWORD=pg_db['login_password'])
    subprocess.run([os.path.join(pg_server.bindir, 'pg_dump'), '-h', '127.0.0.1', '-p', str(pg_server.port),
                    '-U', pg_db['login_user'], '-Fc', '-f', str(path), pg_db['login_db']], check=True, env=env)


def test_weekly_playbook(pg_db, cerniq_tables, pg_server, tmp_path):
    with pytest.raises(psycopg2.Error):
        _q(cerniq_tables, 'CREATE UNIQUE INDEX CONCURRENTLY silver_companies_name_ccnew ON silver_companies (name)')
    weekly = os.path.join(PLAYBOOKS, 'weekly_maintenance.yml')
    backups = tmp_path / 'backups'
    backups.mkdir()
    _dump(pg_server, pg_db, backups / 'cerniq_db-1.dump')

    check = run_playbook(weekly, extra_vars=dict(cerniq_postgres=pg_db, cerniq_backup_path=str(backups)), check=True)
    assert check.returncode == 0, check.stdout
    assert '| public.bronze_contacts | vacuum | planned |' in check.stdout
    assert _last_vacuum(cerniq_tables, 'bronze_contacts') is None
    assert _q(cerniq_tables, "SELECT count(*) FROM pg_class WHERE relname = 'silver_companies_name_ccnew'")[0][0] == 1

    before = dict(_q(cerniq_tables, 'SELECT relname, analyze_count FROM pg_stat_user_tables'))
    proc = run_playbook(weekly, extra_vars=dict(cerniq_postgres=pg_db, cerniq_backup_check_command='true',
                                                cerniq_backup_path=str(backups),
                                                cerniq_backup_textfile_path=str(tmp_path / 'backup.prom')))
    out = proc.stdout
    assert proc.returncode == 0, out
    # Runbook 3.2 step 3 "ANALYZE;": every table, not a list of five (the archive was never analyzed).
    assert '### ANALYZE (every table of the database)' in out
    assert '| public.silver_enrichment_log_archive | analyze | done |' in out
    after = dict(_q(cerniq_tables, 'SELECT relname, analyze_count FROM pg_stat_user_tables'))
    assert [name for name in after if after[name] <= before[name]] == []
    # Runbook 3.2 step 5: the newest backup verified, its metrics written for the alert rules.
    assert 'newest backup %s (custom' % (backups / 'cerniq_db-1.dump') in out and ': verified' in out
    assert 'cerniq_backup_verify_success{task="backup"} 1' in (tmp_path / 'backup.prom').read_text()
    assert '(FULL not allowed: plain VACUUM ANALYZE)' in out
    assert '| public.bronze_contacts | vacuum | done |' in out
    assert '| public.silver_enrichment_log | vacuum | done |' in out
    assert '| public.silver_companies_name_ccnew | drop_invalid_index | done |' in out
    assert '| public.gold_companies | analyze | done |' in out
    assert '| orphan_silver | 2 | ORPHANS FOUND |' in out
    assert 'command true: ok' in out
    assert _last_vacuum(cerniq_tables, 'bronze_contacts') is not None
    assert _q(cerniq_tables, "SELECT count(*) FROM pg_class WHERE relname = 'silver_companies_name_ccnew'")[0][0] == 0

    full = run_playbook(weekly, extra_vars=dict(cerniq_postgres=pg_db, cerniq_allow_vacuum_full=True,
                                                cerniq_fail_on_orphans=True, cerniq_backup_path=str(backups)))
    assert full.returncode != 0  # orphans found and cerniq_fail_on_orphans
    assert '| public.bronze_contacts | vacuum FULL | done |' in full.stdout
    assert 'localhost: weekly maintenance step(s) failed - orphans found: 2 (cerniq_fail_on_orphans is true)' in full.stdout


def test_weekly_playbook_refuses_to_pretend_backups_were_verified(pg_db, cerniq_tables, tmp_path):
    weekly = os.path.join(PLAYBOOKS, 'weekly_maintenance.yml')
    proc = run_playbook(weekly, extra_vars=dict(cerniq_postgres=pg_db))
    assert proc.returncode != 0
    assert '**BACKUPS NOT VERIFIED**: no backup location is configured' in proc.stdout
    assert 'the backups were NOT verified' in proc.stdout
    # A stale backup fails the run and says why.
    (tmp_path / 'old.sql').write_text('-- PostgreSQL database dump complete\n')
    os.utime(tmp_path / 'old.sql', (time.time() - 3 * 86400, time.time() - 3 * 86400))
    proc = run_playbook(weekly, extra_vars=dict(cerniq_postgres=pg_db, cerniq_backup_path=str(tmp_path / 'old.sql')))
    assert proc.returncode != 0
    assert 'FAILED: newest backup is' in proc.stdout
    assert 'weekly maintenance step(s) failed - backup verification: ' in proc.stdout
    # Saying that another tool verifies them is accepted, and said in the report.
    proc = run_playbook(weekly, extra_vars=dict(cerniq_postgres=pg_db, cerniq_backup_verify=False))
    assert proc.returncode == 0, proc.stdout
    assert 'not verified here: cerniq_backup_verify=false' in proc.stdout


def test_weekly_playbook_reports_missing_tables_and_fails(pg_db, pg_conn):
    _q(pg_conn, 'CREATE TABLE bronze_contacts (id bigint PRIMARY KEY)')
    proc = run_playbook(os.path.join(PLAYBOOKS, 'weekly_maintenance.yml'), extra_vars=dict(cerniq_postgres=pg_db))
    assert proc.returncode != 0
    assert "table 'silver_enrichment_log' does not exist" in proc.stdout
    assert '### Orphan checks' in proc.stdout  # the report still ran


def test_daily_playbook(pg_db, cerniq_tables, redis_server, redis_client):
    for key in ('cache:1', 'cache:two words', 'session:expired:9', 'keep:me'):
        redis_client.set(key, 'x')
    proc = run_playbook(os.path.join(PLAYBOOKS, 'daily_maintenance.yml'), extra_vars=dict(
        cerniq_postgres=pg_db, cerniq_redis=redis_server.params(), cerniq_redis_cleanup_enabled=True))
    out = proc.stdout
    assert proc.returncode == 0, out
    for table in ('bronze_contacts', 'silver_companies', 'gold_companies', 'approval_tasks'):
        assert '| public.%s | vacuum | done |' % table in out
        assert _last_vacuum(cerniq_tables, table) is not None
    assert _q(cerniq_tables, 'SELECT array_agg(id ORDER BY id) FROM bronze_contacts')[0][0] == [6, 7, 8, 9, 10]
    assert _q(cerniq_tables, 'SELECT array_agg(id ORDER BY id) FROM silver_enrichment_log')[0][0] == [5, 6]
    assert _q(cerniq_tables, 'SELECT array_agg(id ORDER BY id) FROM silver_enrichment_log_archive')[0][0] == [1, 2, 3, 4]
    assert '| purge | bronze_contacts | (deleted) | 5 |' in out
    assert '| archive | silver_enrichment_log | silver_enrichment_log_archive | 4 |' in out
    assert sorted(k.decode() for k in redis_client.keys('*')) == ['keep:me']
