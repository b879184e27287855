"""Deterministic synthetic CERNIQ data and the runbook incidents, against real PostgreSQL and Redis."""

import json

import pytest

from cerniq_testkit.ansible_run import run_module

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema, synthetic as cerniq_synthetic
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

TABLES = ['users', 'bronze_import_batches', 'bronze_contacts', 'silver_companies', 'silver_enrichment_log',
          'gold_companies', 'approval_tasks']
SMALL = dict(scale=0.05, tenants=2)
REF = '2026-03-02T10:00:00+00:00'


def schema_db(params):
    conn = connect_postgres(params)
    cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    return conn


def fingerprints(conn):
    result = {}
    with conn.cursor() as cur:
        for table in TABLES:
            # identity values are not transactional (a check-mode run consumes some): compare the log
            # without its bigint id
            row, order = ('t::text', 'id') if table != 'silver_enrichment_log' else (
                "(to_jsonb(t) - 'id')::text", 'company_id, source')
            cur.execute('SELECT count(*), md5(coalesce(string_agg(%s, \'|\' ORDER BY %s), \'\')) FROM %s t'
                        % (row, order, table))
            result[table] = cur.fetchone()
    return result


@pytest.fixture
def second_db(pg_server):
    pg_server.psql('DROP DATABASE IF EXISTS synth_twin WITH (FORCE)')
    pg_server.psql('CREATE DATABASE synth_twin OWNER cerniq')
    yield pg_server.params(database='synth_twin')
    pg_server.psql('DROP DATABASE IF EXISTS synth_twin WITH (FORCE)')


def test_load_is_deterministic_idempotent_and_check_mode_writes_nothing(pg_db, second_db):
    conn, twin = schema_db(pg_db), schema_db(second_db)
    try:
        check = cerniq_synthetic.load(conn, 7, dict(SMALL, reference_time=REF), check_mode=True)
        assert check['changed'] and check['inserted']['bronze_contacts'] == 100
        assert all(count == 0 for count, _unused in fingerprints(conn).values())

        first = cerniq_synthetic.load(conn, 7, dict(SMALL, reference_time=REF))
        assert first['inserted'] == check['inserted']
        again = cerniq_synthetic.load(conn, 7, dict(SMALL, reference_time=REF))
        assert not again['changed'] and not any(again['inserted'].values())

        cerniq_synthetic.load(twin, 7, dict(SMALL, reference_time=REF))
        assert fingerprints(conn) == fingerprints(twin)

        # a healthy baseline: nothing stuck, nothing overdue, every master scored
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bronze_import_batches WHERE status = 'processing'")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM approval_tasks WHERE status IN ('pending', 'assigned') "
                        "AND due_at < now()")
            assert cur.fetchone()[0] == 0
            cur.execute('SELECT count(*) FROM silver_companies WHERE total_quality_score IS NULL')
            assert cur.fetchone()[0] == 0
            cur.execute('SELECT count(*) FROM gold_companies')
            assert cur.fetchone()[0] > 0
    finally:
        conn.close()
        twin.close()


def test_other_seed_gives_other_data(pg_db, second_db):
    conn, twin = schema_db(pg_db), schema_db(second_db)
    try:
        cerniq_synthetic.load(conn, 1, dict(SMALL, reference_time=REF))
        cerniq_synthetic.load(twin, 2, dict(SMALL, reference_time=REF))
        assert fingerprints(conn)['bronze_contacts'] != fingerprints(twin)['bronze_contacts']
    finally:
        conn.close()
        twin.close()


def test_inject_every_incident(pg_db, redis_client, redis_params):
    conn = schema_db(pg_db)
    try:
        cerniq_synthetic.load(conn, 3, dict(SMALL))
        check = cerniq_synthetic.inject(conn, 3, list(cerniq_synthetic.INCIDENTS), dict(SMALL),
                                        redis_client=redis_client, check_mode=True)
        assert check['changed'] and redis_client.dbsize() == 0
        result = cerniq_synthetic.inject(conn, 3, list(cerniq_synthetic.INCIDENTS), dict(SMALL),
                                         redis_client=redis_client)
        assert result['changed']
        inc = result['incidents']
        with conn.cursor() as cur:
            cur.execute("SELECT id::text, progress_percent, now() - started_at > interval '30 minutes' "
                        "FROM bronze_import_batches WHERE status = 'processing'")
            rows = cur.fetchall()
            assert [r[0] for r in rows] == inc['stuck_import']['batch_ids'] and rows[0][2]
            cur.execute("SELECT count(*) FROM approval_tasks WHERE status = 'pending' AND due_at < now()")
            assert cur.fetchone()[0] == len(inc['sla_breach']['overdue_task_ids']) == 12
            cur.execute("SELECT count(*) FROM silver_companies WHERE total_quality_score IS NULL "
                        "AND is_master_record")
            assert cur.fetchone()[0] == len(inc['missing_scores']['company_ids']) > 0
            # retention_due: what the daily purge (promoted, > 30 days) and archive (> 90 days) move
            cur.execute("SELECT count(*) FROM bronze_contacts WHERE processing_status = 'promoted' "
                        "AND created_at < now() - interval '30 days'")
            assert cur.fetchone()[0] == inc['retention_due']['bronze_contacts'] == 400
            cur.execute("SELECT count(*) FROM silver_companies s JOIN bronze_contacts b ON b.id = s.source_bronze_id "
                        "WHERE b.created_at < now() - interval '30 days'")
            assert cur.fetchone()[0] == 0  # purging them leaves no orphan
            cur.execute("SELECT count(*) FROM silver_enrichment_log WHERE created_at < now() - interval '90 days'")
            assert cur.fetchone()[0] == inc['retention_due']['enrichment_log_rows'] == 3000
        # Redis: a stalled BullMQ job (active, no lock) and an OPEN circuit with delayed jobs
        job_id = inc['stuck_import']['job_ids'][0]
        assert redis_client.lrange('bull:bronze:ingest:csv:active', 0, -1) == [job_id.encode()]
        assert not redis_client.exists('bull:bronze:ingest:csv:%s:lock' % job_id)
        job = redis_client.hgetall('bull:bronze:ingest:csv:%s' % job_id)
        assert job[b'name'] == b'csv-import' and b'processedOn' in job
        assert json.loads(job[b'data'])['importBatchId'] == inc['stuck_import']['batch_ids'][0]
        assert redis_client.get('circuit:anaf:state') == b'OPEN'
        assert int(redis_client.get('circuit:anaf:failures')) > 0
        delayed = 'bull:silver:enrich:anaf-fiscal-status:delayed'
        assert redis_client.zcard(delayed) == len(inc['circuit_open']['delayed_job_ids']) > 0

        snapshot = {key: redis_client.dump(key) for key in redis_client.keys('*')}
        # idempotent whatever the reference time of the rerun
        again = cerniq_synthetic.inject(conn, 3, list(cerniq_synthetic.INCIDENTS),
                                        dict(SMALL, reference_time='2026-01-15T12:00:00+00:00'),
                                        redis_client=redis_client)
        assert not again['changed'], again
        assert {key: redis_client.dump(key) for key in redis_client.keys('*')} == snapshot
    finally:
        conn.close()


def test_inject_needs_loaded_data_and_known_incident(pg_db):
    conn = schema_db(pg_db)
    try:
        with pytest.raises(cerniq_synthetic.SyntheticError, match='load the baseline first'):
            cerniq_synthetic.inject(conn, 9, ['sla_breach'])
        with pytest.raises(cerniq_synthetic.SyntheticError, match='unknown incident'):
            cerniq_synthetic.inject(conn, 9, ['meteor_strike'])
    finally:
        conn.close()


def test_module_load_and_inject(pg_db, redis_params, redis_client):
    schema_db(pg_db).close()
    args = dict(pg_db, seed='11', scale=0.05, tenants=1)
    check = run_module('cerniq_synthetic_data', args, check_mode=True)
    assert not check.failed and check['changed'], check
    first = run_module('cerniq_synthetic_data', args)
    assert not first.failed and first['changed'] and first['inserted']['bronze_contacts'] == 50
    assert not run_module('cerniq_synthetic_data', args)['changed']
    inject_args = dict(args, **redis_params)
    inject_args.update(incidents=['stuck_import', 'sla_breach'])
    injected = run_module('cerniq_synthetic_data', inject_args)
    assert not injected.failed and injected['changed'], injected
    assert injected['inserted']['bronze_contacts'] == 0 and set(injected['incidents']) == {'stuck_import', 'sla_breach'}
    assert redis_client.llen('bull:bronze:ingest:csv:active') == 1
    assert not run_module('cerniq_synthetic_data', inject_args)['changed']
    bad = run_module('cerniq_synthetic_data', dict(args, incidents=['flood']))
    assert bad.failed and 'flood' in bad['msg']
    for old in (dict(action='load'), dict(stuck_minutes=120), dict(stuck_for=120)):
        refused = run_module('cerniq_synthetic_data', dict(args, **old))
        assert refused.failed and '\n' not in refused['msg'].strip(), refused


def test_module_loads_and_injects_in_one_transaction(pg_db):
    """An empty database and incidents: check mode predicts both (rolled back), the run does both at once."""
    schema_db(pg_db).close()
    args = dict(pg_db, seed='12', scale=0.05, tenants=1, incidents=['sla_breach', 'missing_scores'],
                stuck_for='3h')
    check = run_module('cerniq_synthetic_data', args, check_mode=True)
    assert not check.failed and check['changed'] and check['inserted']['bronze_contacts'] == 50, check
    assert set(check['incidents']) == {'sla_breach', 'missing_scores'}
    conn = schema_db(pg_db)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT count(*) FROM bronze_contacts')
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
    done = run_module('cerniq_synthetic_data', args)
    assert not done.failed and done['inserted']['bronze_contacts'] == 50 and set(done['incidents']) == set(
        check['incidents'])
    assert not run_module('cerniq_synthetic_data', args)['changed']


@pytest.mark.parametrize('reference_time', ['not a time', 'infinity', '0001-01-01T00:00:00Z', ''])
def test_a_reference_time_that_is_not_a_time_is_refused_before_connecting(pg_db, reference_time):
    result = run_module('cerniq_synthetic_data', dict(pg_db, login_port=1, seed='13',
                                                      reference_time=reference_time))
    assert result.failed and 'reference_time must' in result['msg'], result
    assert 'Traceback' not in result.stderr and '\n' not in result['msg'].strip()
