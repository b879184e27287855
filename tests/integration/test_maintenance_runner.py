"""The scheduled maintenance runner (roles/maintenance/files/cerniq-maintenance) against real servers.

The runner is run as the role installs it, a separate process importing the
collection's engines; here the engines come from the repository itself. The
Molecule scenario runs the same runner installed by the role on a systemd host.
"""

import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import time

import psycopg2.extensions
import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres
from cerniq_testkit.ansible_run import REPO, collections_root

RUNNER = os.path.join(REPO, 'roles', 'maintenance', 'files', 'cerniq_maintenance.py')


@pytest.fixture
def cerniq_db(pg_conn):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    with pg_conn.cursor() as cur:
        cur.execute("""
            INSERT INTO bronze_contacts (tenant_id, processing_status, created_at)
            SELECT '00000000-0000-0000-0000-000000000001',
                   CASE WHEN g % 2 = 0 THEN 'promoted' ELSE 'pending' END,
                   now() - (g || ' days')::interval + interval '12 hours'
            FROM generate_series(1, 60) g""")
        cur.execute("""
            INSERT INTO silver_enrichment_log (company_id, source, status, duration_ms, created_at)
            SELECT gen_random_uuid(), 'anaf', 'success', 10, now() - (g || ' days')::interval + interval '12 hours'
            FROM generate_series(1, 120) g""")
    return pg_conn


def _config(tmp_path, pg_db, redis_params, steps, timeout=600, job='daily'):
    config = dict(
        job=job, log_file=str(tmp_path / ('maintenance-%s.log' % job)), lock_file=str(tmp_path / 'job.lock'),
        textfile_dir=str(tmp_path), credentials_file=str(tmp_path / 'credentials'), timeout=timeout,
        postgres={k: v for k, v in pg_db.items() if k != 'login_password'},
        redis={k: v for k, v in redis_params.items() if k != 'redis_password'}, steps=steps)
    (tmp_path / 'credentials').write_text('PGPASSWORD=%s\n' % pg_db['login_password'])
    (tmp_path / 'credentials').chmod(0o600)
    path = tmp_path / ('%s.json' % job)
    path.write_text(json.dumps(config))
    return path


def _run(config_path, *extra):
    return subprocess.run([sys.executable, RUNNER, '--config', str(config_path), '--lib', collections_root()]
                          + list(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, check=False)


DAILY = [
    {'name': 'vacuum_analyze', 'type': 'maintenance',
     'options': {'tasks': [{'action': 'vacuum', 'table': t, 'analyze': True}
                           for t in ('bronze_contacts', 'silver_companies', 'gold_companies', 'approval_tasks')]}},
    {'name': 'purge_bronze', 'type': 'archive',
     'options': {'source_table': 'bronze_contacts', 'older_than': '30 days',
                 'where': "processing_status = 'promoted'"}},
    {'name': 'archive_enrichment_log', 'type': 'archive',
     'options': {'source_table': 'silver_enrichment_log', 'archive_table': 'silver_enrichment_log_archive',
                 'older_than': '90 days'}},
    {'name': 'redis_cleanup', 'type': 'redis_keys', 'options': {'patterns': ['cache:*', 'session:expired:*'],
                                                                'max_keys': 1000}},
]


def _count(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def test_daily_run_archives_purges_cleans_and_reports(tmp_path, pg_db, cerniq_db, redis_params, redis_client):
    for i in range(50):
        redis_client.set('cache:company:%d' % i, 'x')
    redis_client.set('session:expired:a b "c"', 'x')
    redis_client.set('session:live:1', 'keep')
    config = _run_config = _config(tmp_path, pg_db, redis_params, DAILY)
    result = _run(_run_config)
    assert result.returncode == 0, result.stdout
    # 60 bronze rows: promoted (even g) and older than 30 days (g > 30) = 15 purged.
    assert _count(cerniq_db, 'SELECT count(*) FROM bronze_contacts') == 45
    assert _count(cerniq_db, "SELECT count(*) FROM bronze_contacts WHERE processing_status = 'promoted' "
                             "AND created_at < now() - interval '30 days'") == 0
    # 120 log rows, days 91..120 archived = 30; none lost.
    assert _count(cerniq_db, 'SELECT count(*) FROM silver_enrichment_log_archive') == 30
    assert _count(cerniq_db, 'SELECT count(*) FROM silver_enrichment_log') == 90
    assert sorted(redis_client.keys('*')) == [b'session:live:1']
    metrics = (tmp_path / 'cerniq_maintenance_daily.prom').read_text()
    assert 'cerniq_maintenance_exit_status{task="daily"} 0' in metrics
    assert 'cerniq_maintenance_rows_purged{task="daily"} 15' in metrics
    assert 'cerniq_maintenance_rows_archived{task="daily"} 30' in metrics
    assert 'cerniq_maintenance_keys_deleted{task="daily"} 51' in metrics
    assert 'cerniq_maintenance_last_success_timestamp_seconds{task="daily"}' in metrics
    log = (tmp_path / 'maintenance-daily.log').read_text()
    assert 'step purge_bronze: ok' in log and 'end: success' in log
    assert pg_db['login_password'] not in log + result.stdout
    # Second run: nothing left to do, still a success.
    again = _run(config)
    assert again.returncode == 0
    assert 'cerniq_maintenance_rows_archived{task="daily"} 0' in (tmp_path / 'cerniq_maintenance_daily.prom').read_text()


def test_a_second_run_during_the_first_exits_without_doing_anything(tmp_path, pg_db, cerniq_db, redis_params):
    config = _config(tmp_path, pg_db, redis_params, DAILY)
    with open(tmp_path / 'job.lock', 'a') as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _run(config)
    assert result.returncode == 0
    assert 'holds the lock' in result.stdout and 'exiting without doing anything' in result.stdout
    assert _count(cerniq_db, 'SELECT count(*) FROM bronze_contacts') == 60
    assert not (tmp_path / 'cerniq_maintenance_daily.prom').exists()


def test_timeout_cancels_the_running_statement_and_fails_the_run(tmp_path, pg_db, cerniq_db, redis_params):
    steps = [{'name': 'slow_check', 'type': 'health',
              'options': {'sections': ['orphans'],
                          'orphan_checks': [{'name': 'slow', 'query': 'SELECT count(*) FROM pg_sleep(30)'}]}},
             DAILY[1]]
    result = _run(_config(tmp_path, pg_db, redis_params, steps, timeout=2))
    assert result.returncode == 124, result.stdout
    assert 'run timeout of 2 s reached' in result.stdout
    assert 'step purge_bronze: not started' in result.stdout
    metrics = (tmp_path / 'cerniq_maintenance_daily.prom').read_text()
    assert 'cerniq_maintenance_exit_status{task="daily"} 124' in metrics
    assert 'cerniq_maintenance_last_success_timestamp_seconds' not in metrics
    assert 'cerniq_maintenance_step_success{step="slow_check",task="daily"} 0' in metrics


def _watchdog_class():
    spec = importlib.util.spec_from_file_location('cerniq_maintenance_runner', RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Watchdog


def test_a_statement_started_after_the_deadline_is_cancelled_too(pg_db):
    """The race CI hit on a loaded machine: the deadline passed while the step was connecting, the one
    cancel reached an idle connection, and a 30 s statement then ran to the end (step ok, run 124)."""
    watchdog = _watchdog_class()(0.2)
    conn = connect_postgres(pg_db)  # the engines' connection, as the runner opens it
    try:
        watchdog.watch(conn)
        watchdog.start()
        time.sleep(0.6)  # past the deadline, nothing running: the first cancel finds the connection idle
        assert watchdog.timed_out
        with pytest.raises(psycopg2.extensions.QueryCanceledError):  # a finished pg_sleep(30) raises nothing
            with conn.cursor() as cur:
                cur.execute('SELECT pg_sleep(30)')
        # and no new connection is handed out after the deadline
        late = connect_postgres(pg_db)
        with pytest.raises(RuntimeError, match='after the run timeout'):
            watchdog.watch(late)
        assert late.closed
    finally:
        watchdog.stop()
        conn.close()


def test_failed_step_keeps_last_success_and_other_steps_run(tmp_path, pg_db, cerniq_db, redis_params):
    config = _config(tmp_path, pg_db, redis_params, DAILY[1:2])
    assert _run(config).returncode == 0
    prom = tmp_path / 'cerniq_maintenance_daily.prom'
    success_line = [line for line in prom.read_text().splitlines()
                    if line.startswith('cerniq_maintenance_last_success_timestamp_seconds')]
    broken = {'name': 'broken', 'type': 'archive',
              'options': {'source_table': 'no_such_table', 'older_than': '1 day'}}
    steps = [broken, DAILY[2]]
    result = _run(_config(tmp_path, pg_db, redis_params, steps))
    assert result.returncode == 1
    assert 'step broken: FAILED' in result.stdout and 'step archive_enrichment_log: ok' in result.stdout
    text = prom.read_text()
    assert [line for line in text.splitlines()
            if line.startswith('cerniq_maintenance_last_success_timestamp_seconds')] == success_line
    assert 'cerniq_maintenance_exit_status{task="daily"} 1' in text


def test_disabled_step_and_dry_run_change_nothing(tmp_path, pg_db, cerniq_db, redis_params):
    steps = [dict(DAILY[1], enabled=False), DAILY[2]]
    result = _run(_config(tmp_path, pg_db, redis_params, steps), '--dry-run')
    assert result.returncode == 0, result.stdout
    assert 'step purge_bronze: disabled' in result.stdout
    assert 'would move' in result.stdout
    assert _count(cerniq_db, 'SELECT count(*) FROM silver_enrichment_log') == 120
    assert not (tmp_path / 'cerniq_maintenance_daily.prom').exists()


def _analyze_counts(conn):
    with conn.cursor() as cur:
        cur.execute('SELECT relname, analyze_count FROM pg_stat_user_tables')
        return dict(cur.fetchall())


def test_weekly_analyze_covers_the_whole_database(tmp_path, pg_db, cerniq_db, redis_params):
    """Runbook 3.2 step 3 is ``ANALYZE;``: every table, also users, import batches and the archive."""
    with cerniq_db.cursor() as cur:
        cur.execute('CREATE SCHEMA reporting')
        cur.execute('CREATE TABLE reporting."Daily Totals" (day date)')
    before = _analyze_counts(cerniq_db)
    steps = [{'name': 'analyze', 'type': 'analyze_database', 'options': {'schemas': []}}]
    result = _run(_config(tmp_path, pg_db, redis_params, steps, job='weekly'))
    assert result.returncode == 0, result.stdout
    after = _analyze_counts(cerniq_db)
    assert {'users', 'bronze_import_batches', 'silver_enrichment_log_archive', 'approval_task_escalations',
            'Daily Totals'} <= set(after)
    assert [name for name in after if after[name] <= before.get(name, 0)] == []
    assert 'step analyze: ok' in result.stdout


def test_weekly_auto_maintenance_fixes_what_the_health_report_finds(tmp_path, pg_db, cerniq_db, redis_params):
    """The runner's auto_maintenance step is pg_maintenance targets=auto (the same report -> tasks composition)."""
    with cerniq_db.cursor() as cur:
        cur.execute("CREATE TABLE churn (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)")
        cur.execute("INSERT INTO churn SELECT g, g % 50 FROM generate_series(1, 2000) g")
        cur.execute("DELETE FROM churn WHERE id % 3 = 0")
        cur.execute("SELECT pg_stat_force_next_flush()")
        with pytest.raises(Exception):  # an interrupted REINDEX CONCURRENTLY's leftover: an invalid index
            cur.execute("CREATE UNIQUE INDEX CONCURRENTLY churn_v_ccnew ON churn (v)")
    for _attempt in range(50):  # the dead tuples reach the statistics the report reads
        if _count(cerniq_db, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn'"):
            break
        time.sleep(0.1)
    thresholds = dict(min_dead_tuples=10, dead_tuples_pct=1, freeze_age=10 ** 9, index_bloat_min_bytes=10 ** 12)
    steps = [{'name': 'auto_maintenance', 'type': 'auto_maintenance', 'options': {'thresholds': thresholds}}]
    config = _config(tmp_path, pg_db, redis_params, steps, job='weekly')

    dry = _run(config, '--dry-run')
    assert dry.returncode == 0, dry.stdout
    assert _count(cerniq_db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 1

    result = _run(config)
    assert result.returncode == 0, result.stdout
    assert 'drop_invalid_index public.churn_v_ccnew: done' in result.stdout
    assert 'vacuum public.churn: done' in result.stdout
    assert _count(cerniq_db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert _count(cerniq_db, "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'churn'")
    assert 'nothing needed' in _run(config).stdout


def _dump_config(tmp_path, pg_db, redis_params, backups, keep=2):
    steps = [{'name': 'pg_dump', 'type': 'pg_dump',
              'options': {'directory': str(backups), 'prefix': 'cerniq_db', 'keep': keep}}]
    return _config(tmp_path, pg_db, redis_params, steps, job='backup')


def _verify_config(tmp_path, pg_db, redis_params, backups, **options):
    step = {'name': 'backup_verify', 'type': 'backup_verify',
            'options': dict({'path': str(backups), 'list_command': '', 'pattern': '*', 'max_age_hours': 26,
                             'restore': False, 'tables': []}, **options)}
    return _config(tmp_path, pg_db, redis_params, [step], job='weekly')


def test_backup_job_dumps_prunes_and_the_weekly_check_writes_the_backup_metrics(
        tmp_path, pg_db, cerniq_db, redis_params):
    backups = tmp_path / 'backups'
    backups.mkdir()
    (backups / 'cerniq_db-manual-copy.dump').write_text('not ours: never pruned')
    dump = _dump_config(tmp_path, pg_db, redis_params, backups, keep=2)
    for _run_number in range(3):
        result = _run(dump)
        assert result.returncode == 0, result.stdout
        time.sleep(1.1)  # dump names carry the second
    ours = sorted(p.name for p in backups.iterdir() if p.name != 'cerniq_db-manual-copy.dump')
    assert len(ours) == 2 and all(name.endswith('Z.dump') for name in ours), ours
    assert (backups / 'cerniq_db-manual-copy.dump').exists()
    assert pg_db['login_password'] not in result.stdout
    newest = backups / ours[-1]
    os.utime(backups / 'cerniq_db-manual-copy.dump', (time.time() - 3600, time.time() - 3600))

    result = _run(_verify_config(tmp_path, pg_db, redis_params, backups))
    assert result.returncode == 0, result.stdout
    assert 'backup %s verified (custom' % newest in result.stdout
    metrics = (tmp_path / 'cerniq_backup.prom').read_text()
    assert 'cerniq_backup_verify_success{task="backup"} 1' in metrics
    for check in ('found', 'fresh', 'readable'):
        assert 'cerniq_backup_verify_check{check="%s",task="backup"} 1' % check in metrics
    assert 'check="restored"' not in metrics  # not attempted
    success = [line for line in metrics.splitlines() if line.startswith('cerniq_backup_last_success')]

    # The newest dump turns unreadable: the check fails, the metrics say which check, the last success stays.
    newest.write_bytes(newest.read_bytes()[:200])
    result = _run(_verify_config(tmp_path, pg_db, redis_params, backups))
    assert result.returncode == 1 and 'backup verification failed' in result.stdout
    metrics = (tmp_path / 'cerniq_backup.prom').read_text()
    assert 'cerniq_backup_verify_success{task="backup"} 0' in metrics
    assert 'cerniq_backup_verify_check{check="readable",task="backup"} 0' in metrics
    assert 'cerniq_backup_verify_check{check="fresh",task="backup"} 1' in metrics
    assert [line for line in metrics.splitlines() if line.startswith('cerniq_backup_last_success')] == success


def test_weekly_check_without_backups_is_a_failed_found_check(tmp_path, pg_db, cerniq_db, redis_params):
    empty = tmp_path / 'nothing-here'
    empty.mkdir()
    result = _run(_verify_config(tmp_path, pg_db, redis_params, empty))
    assert result.returncode == 1
    assert 'no backup found' in result.stdout
    metrics = (tmp_path / 'cerniq_backup.prom').read_text()
    assert 'cerniq_backup_verify_check{check="found",task="backup"} 0' in metrics
    # A configuration without any location (edited by hand) is never reported as verified.
    result = _run(_verify_config(tmp_path, pg_db, redis_params, '', list_command=''))
    assert result.returncode == 1 and 'no backup location configured' in result.stdout


def test_a_failed_dump_leaves_no_file_that_looks_like_a_backup(tmp_path, pg_db, cerniq_db, redis_params):
    backups = tmp_path / 'backups'
    backups.mkdir()
    config = _dump_config(tmp_path, pg_db, redis_params, backups)
    (tmp_path / 'credentials').write_text('PGPASSWORD=wrong\n')
    result = _run(config)
    assert result.returncode == 1 and 'pg_dump failed' in result.stdout, result.stdout
    assert list(backups.iterdir()) == []
