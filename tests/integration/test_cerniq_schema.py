"""The CERNIQ schema migrations and the cerniq_schema module, against a real PostgreSQL."""

import os

import pytest

from cerniq_testkit.ansible_run import REPO, run_module, run_playbook

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

MIGRATIONS_DIR = os.path.join(REPO, 'schema', 'migrations')

RUNBOOK_QUERIES = [
    # 2.1
    "SELECT id, status, progress_percent, total_rows, processed_rows, error_message, started_at "
    "FROM bronze_import_batches WHERE id = '00000000-0000-0000-0000-000000000000'",
    # 2.3
    "SELECT id, approval_type, priority, due_at, assigned_to, escalation_level, NOW() - due_at AS overdue_by "
    "FROM approval_tasks WHERE status = 'pending' AND due_at < NOW() ORDER BY due_at",
    "SELECT u.name, COUNT(*) AS pending_tasks, AVG(EXTRACT(EPOCH FROM (NOW() - at.created_at))/3600) "
    "FROM approval_tasks at JOIN users u ON at.assigned_to = u.id "
    "WHERE at.status IN ('pending', 'assigned') GROUP BY u.id, u.name",
    "UPDATE approval_tasks SET status = 'approved', decision = 'approve', decision_reason = 'x', "
    "decided_at = NOW() WHERE status = 'pending' AND approval_type = 'dedup_review' "
    "AND (metadata->>'confidence')::float >= 0.90 AND due_at < NOW()",
    # 2.4
    "SELECT COUNT(*), enrichment_status, promotion_status FROM silver_companies "
    "WHERE total_quality_score IS NULL AND is_master_record = true GROUP BY enrichment_status, promotion_status",
    "SELECT queue_name, waiting, active, completed, failed FROM bullmq_queue_stats WHERE queue_name LIKE 'silver:score%'",
    "UPDATE silver_companies SET completeness_score = NULL, accuracy_score = NULL, freshness_score = NULL "
    "WHERE total_quality_score IS NULL",
    # 3.1 / 3.2
    "DELETE FROM bronze_contacts WHERE created_at < NOW() - INTERVAL '30 days' AND processing_status = 'promoted'",
    "INSERT INTO silver_enrichment_log_archive SELECT * FROM silver_enrichment_log "
    "WHERE created_at < NOW() - INTERVAL '90 days'",
    "SELECT COUNT(*) FROM silver_companies sc WHERE sc.source_bronze_id IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM bronze_contacts bc WHERE bc.id = sc.source_bronze_id)",
    # 4.1
    "SELECT COUNT(*) FROM bronze_contacts WHERE tenant_id = '00000000-0000-0000-0000-000000000000'",
    "SELECT COUNT(*) FROM gold_companies WHERE tenant_id = '00000000-0000-0000-0000-000000000000'",
    "SELECT total_quality_score, COUNT(*) FROM silver_companies GROUP BY total_quality_score "
    "ORDER BY total_quality_score",
    # 6.1
    "SELECT DATE(created_at), COUNT(*), AVG(EXTRACT(EPOCH FROM (processed_at - created_at))) "
    "FROM bronze_contacts WHERE created_at > NOW() - INTERVAL '30 days' GROUP BY DATE(created_at)",
    "SELECT source, DATE(created_at), COUNT(*), AVG(duration_ms) FROM silver_enrichment_log "
    "WHERE created_at > NOW() - INTERVAL '30 days' GROUP BY source, DATE(created_at)",
    "SELECT DATE(created_at), COUNT(*), COUNT(*) FILTER (WHERE decided_at IS NOT NULL), "
    "AVG(EXTRACT(EPOCH FROM (decided_at - created_at))/3600) FILTER (WHERE decided_at IS NOT NULL) "
    "FROM approval_tasks WHERE created_at > NOW() - INTERVAL '30 days' GROUP BY DATE(created_at)",
]


def _migrations_arg():
    return [dict(name=m['name'], sql=m['sql']) for m in cerniq_schema.load_migrations_dir(MIGRATIONS_DIR)]


def test_module_applies_then_is_idempotent_and_runbook_queries_run(pg_db, pg_conn):
    check = run_module('cerniq_schema', dict(pg_db, migrations=_migrations_arg()), check_mode=True)
    assert not check.failed, check
    assert check['changed'] and check['applied'][0].startswith('001_')
    with pg_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('approval_tasks'), to_regclass('schema_migrations')")
        assert cur.fetchone() == (None, None), 'check mode must write nothing'

    first = run_module('cerniq_schema', dict(pg_db, migrations=_migrations_arg()), diff=True)
    assert not first.failed, first
    assert first['changed'] and first['applied'] == sorted(first['applied']) and first['pending'] == []
    assert '001_core_tables.sql' in first['diff']['after']

    second = run_module('cerniq_schema', dict(pg_db, migrations=_migrations_arg()))
    assert not second.failed and not second['changed'] and second['applied'] == []
    assert second['already_applied'] == first['applied']

    with pg_conn.cursor() as cur:
        for sql in RUNBOOK_QUERIES:
            cur.execute(sql)
        cur.execute('SELECT name FROM schema_migrations ORDER BY name')
        assert [row[0] for row in cur.fetchall()] == first['applied']
        # the archive has the log's columns, in the same order
        cur.execute("SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) "
                    "FROM information_schema.columns WHERE table_name IN "
                    "('silver_enrichment_log', 'silver_enrichment_log_archive') GROUP BY table_name")
        cols = dict(cur.fetchall())
        assert cols['silver_enrichment_log'] == cols['silver_enrichment_log_archive']


def test_failing_migration_is_rolled_back_and_named(pg_db, pg_conn):
    migrations = _migrations_arg() + [
        dict(name='900_bad.sql', sql='CREATE TABLE half_done (id int); SELECT * FROM no_such_table;')]
    result = run_module('cerniq_schema', dict(pg_db, migrations=migrations))
    assert result.failed and '900_bad.sql' in result['msg'] and 'no_such_table' in result['msg']
    with pg_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('half_done'), to_regclass('approval_tasks') IS NOT NULL")
        assert cur.fetchone() == (None, True)
        cur.execute("SELECT count(*) FROM schema_migrations WHERE name = '900_bad.sql'")
        assert cur.fetchone()[0] == 0


def test_changed_applied_migration_is_refused(pg_db):
    conn = connect_postgres(pg_db)
    try:
        cerniq_schema.apply(conn, [('001_a.sql', 'CREATE TABLE a (id int);')])
        with pytest.raises(cerniq_schema.ChecksumMismatch, match='001_a.sql'):
            cerniq_schema.apply(conn, [('001_a.sql', 'CREATE TABLE a (id bigint);')])
        with pytest.raises(cerniq_schema.MigrationError, match='invalid migration name'):
            cerniq_schema.normalize_migrations([('bad.sql', 'SELECT 1')])
    finally:
        conn.close()


def test_load_schema_playbook(pg_db, pg_conn):
    playbook = os.path.join(REPO, 'playbooks', 'load_schema.yml')
    first = run_playbook(playbook, extra_vars=dict(cerniq_postgres=pg_db))
    assert first.returncode == 0, first.stdout
    second = run_playbook(playbook, extra_vars=dict(cerniq_postgres=pg_db))
    assert second.returncode == 0, second.stdout
    assert 'changed=0' in second.stdout
    with pg_conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM schema_migrations')
        assert cur.fetchone()[0] == len(os.listdir(MIGRATIONS_DIR))
    # the path option reads the same files with the same checksums: nothing to do
    again = run_module('cerniq_schema', dict(pg_db, path=MIGRATIONS_DIR))
    assert not again.failed and not again['changed'], again


def test_concurrent_runs_apply_each_migration_once(pg_db, pg_conn):
    import threading
    migrations = [('001_a.sql', 'CREATE TABLE a (id int);'), ('002_b.sql', 'CREATE TABLE b (id int);')]
    results, errors = [], []

    def run():
        conn = connect_postgres(pg_db)
        try:
            results.append(cerniq_schema.apply(conn, migrations))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=run) for _unused in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(name for r in results for name in r['applied']) == ['001_a.sql', '002_b.sql']
    with pg_conn.cursor() as cur:
        cur.execute('SELECT name, count(*) FROM schema_migrations GROUP BY name ORDER BY name')
        assert cur.fetchall() == [('001_a.sql', 1), ('002_b.sql', 1)]


@pytest.mark.parametrize('check_mode', [True, False])
def test_a_table_that_is_not_a_migrations_table_is_refused(pg_db, pg_conn, check_mode):
    """A typo naming an application table (hostile review, defect 12 class): one line, nothing applied."""
    with pg_conn.cursor() as cur:
        cur.execute('CREATE TABLE users (id int PRIMARY KEY, email text)')
    result = run_module('cerniq_schema', dict(pg_db, table='users', migrations=[
        dict(name='900_table.sql', sql='CREATE TABLE hostile_new (id int)')]), check_mode=check_mode)
    assert result.failed and 'users exists but is not a migrations table' in result['msg'], result
    assert 'Traceback' not in result.stderr
    with pg_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('hostile_new')")
        assert cur.fetchone()[0] is None
