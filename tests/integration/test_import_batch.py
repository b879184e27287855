"""Runbook 2.1 (import stuck in processing): cerniq.ops.import_batch against real PostgreSQL and Redis.

The incident is injected with the synthetic data engine (a batch stuck for two hours and its stalled
BullMQ job), then diagnosed, cancelled, and its queue repaired with cerniq.ops.bullmq_queue.
"""

import pytest

from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.results import assert_refused

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import imports as cerniq_imports, schema as cerniq_schema, synthetic as cerniq_synthetic
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

SEED = '21'


@pytest.fixture
def stuck_db(pg_db, pg_conn, redis_client):
    conn = connect_postgres(pg_db)
    try:
        cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
        cerniq_synthetic.load(conn, SEED, dict(scale=0.05, tenants=1))
        injected = cerniq_synthetic.inject(conn, SEED, ['stuck_import'], redis_client=redis_client)
    finally:
        conn.close()
    tenant = cerniq_synthetic.tenant_ids(SEED, 1)[0]
    with pg_conn.cursor() as cur:
        # not stuck: started five minutes ago
        cur.execute("INSERT INTO bronze_import_batches (tenant_id, status, progress_percent, started_at, updated_at) "
                    "VALUES (%s, 'processing', 10, now() - interval '5 minutes', now()) RETURNING id::text", (tenant,))
        young = cur.fetchone()[0]
        # not stuck: old, but its progress was updated a minute ago
        cur.execute("INSERT INTO bronze_import_batches (tenant_id, status, progress_percent, started_at, updated_at) "
                    "VALUES (%s, 'processing', 80, now() - interval '3 hours', now() - interval '1 minute') "
                    "RETURNING id::text", (tenant,))
        moving = cur.fetchone()[0]
    return dict(injected['incidents']['stuck_import'], young=young, moving=moving)


def _status(pg_conn, batch_id):
    with pg_conn.cursor() as cur:
        cur.execute('SELECT status, error_message, cancelled_at IS NOT NULL FROM bronze_import_batches WHERE id = %s',
                    (batch_id,))
        return cur.fetchone()


def test_diagnose_cancel_and_repair(pg_db, pg_conn, stuck_db, redis_params, redis_client):
    stuck_id = stuck_db['batch_ids'][0]
    found = run_module('import_batch_info', pg_db)
    assert not found.failed and not found['changed'], found
    assert 'cancelled' not in found and 'no_longer_stuck' not in found
    assert run_module('import_batch_info', dict(pg_db, stuck_after='1 day'))['batches'] == []
    assert [b['id'] for b in found['batches']] == [stuck_id]
    batch = found['batches'][0]
    assert batch['progress_percent'] == 37.0 and batch['processed_rows'] == 185 and batch['stalled_minutes'] > 100
    assert found['queues'] == [dict(name='bronze:ingest:csv', job_ids=stuck_db['job_ids'])]

    check = run_module('import_batch', dict(pg_db, state='cancelled'), check_mode=True, diff=True)
    assert not check.failed and check['changed'] and [b['id'] for b in check['cancelled']] == [stuck_id]
    assert 'cancelled' in check['diff']['after']
    assert _status(pg_conn, stuck_id)[0] == 'processing'

    reason = 'Cancelled by test - stuck processing'
    done = run_module('import_batch', dict(pg_db, state='cancelled', reason=reason))
    assert not done.failed and done['changed'] and [b['id'] for b in done['cancelled']] == [stuck_id]
    assert _status(pg_conn, stuck_id) == ('cancelled', reason, True)
    for other in (stuck_db['young'], stuck_db['moving']):
        assert _status(pg_conn, other)[0] == 'processing'
    again = run_module('import_batch', dict(pg_db, state='cancelled', reason=reason))
    assert not again.failed and not again['changed'] and again['cancelled'] == []

    # the stalled job goes back to waiting through the BullMQ repair module
    queue = done['queues'][0]
    repaired = run_module('bullmq_queue', dict(redis_params, name=queue['name'], state='repaired'))
    assert not repaired.failed, repaired
    assert redis_client.llen('bull:bronze:ingest:csv:active') == 0
    assert redis_client.lrange('bull:bronze:ingest:csv:wait', 0, -1) == [queue['job_ids'][0].encode()]


def test_progress_between_diagnosis_and_update_is_respected(pg_db, pg_conn, stuck_db, monkeypatch):
    stale = cerniq_imports.find_stuck(pg_conn)
    assert [b['id'] for b in stale] == stuck_db['batch_ids']
    with pg_conn.cursor() as cur:  # the worker came back and reported progress
        cur.execute("UPDATE bronze_import_batches SET updated_at = now(), progress_percent = 40 WHERE id = %s",
                    (stuck_db['batch_ids'][0],))
    monkeypatch.setattr(cerniq_imports, 'find_stuck', lambda *a, **k: stale)
    result = cerniq_imports.cancel(pg_conn)
    assert not result['changed'] and result['no_longer_stuck'] == stuck_db['batch_ids'] and result['queues'] == []
    assert _status(pg_conn, stuck_db['batch_ids'][0])[0] == 'processing'


def test_bad_input_is_a_clear_error(pg_db, stuck_db, pg_conn):
    bad = run_module('import_batch', dict(pg_db, state='cancelled', ids=['not-a-uuid']))
    assert bad.failed and 'not-a-uuid' in bad['msg']
    bad = run_module('import_batch', dict(pg_db, state='cancelled', reason='  '))
    assert bad.failed and 'reason' in bad['msg']
    assert _status(pg_conn, stuck_db['batch_ids'][0])[0] == 'processing'


def test_runbook_playbook(pg_db, pg_conn, stuck_db, redis_params, redis_client):
    """playbooks/runbook/stuck_import.yml: without confirmation (no TTY) it only reports; with
    cerniq_confirm=true it cancels, repairs the queue and verifies."""
    import os
    from cerniq_testkit.ansible_run import REPO, run_playbook
    playbook = os.path.join(REPO, 'playbooks', 'runbook', 'stuck_import.yml')
    extra = dict(cerniq_postgres=pg_db, cerniq_redis=redis_params)
    report = run_playbook(playbook, extra_vars=extra)
    assert report.returncode == 0, report.stdout
    assert 'Report only' in report.stdout
    assert _status(pg_conn, stuck_db['batch_ids'][0])[0] == 'processing'
    assert redis_client.llen('bull:bronze:ingest:csv:active') == 1

    dry = run_playbook(playbook, extra_vars=dict(extra, cerniq_confirm=True), check=True)
    assert dry.returncode == 0, dry.stdout
    assert _status(pg_conn, stuck_db['batch_ids'][0])[0] == 'processing'
    assert redis_client.llen('bull:bronze:ingest:csv:active') == 1

    fixed = run_playbook(playbook, extra_vars=dict(extra, cerniq_confirm=True))
    assert fixed.returncode == 0, fixed.stdout
    assert _status(pg_conn, stuck_db['batch_ids'][0])[0] == 'cancelled'
    assert redis_client.llen('bull:bronze:ingest:csv:active') == 0
    assert redis_client.llen('bull:bronze:ingest:csv:wait') == 1
    for other in (stuck_db['young'], stuck_db['moving']):
        assert _status(pg_conn, other)[0] == 'processing'
    again = run_playbook(playbook, extra_vars=dict(extra, cerniq_confirm=True))
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout


def _batches(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*), md5(string_agg(b::text, '|' ORDER BY id)) FROM bronze_import_batches b")
        return cur.fetchone()


@pytest.mark.parametrize('args, words', [
    (dict(stuck_after='9999 weeks'), ('stuck_after', 'between 1m and 365d')),
    (dict(stuck_after='0s'), ('stuck_after',)),
    (dict(stuck_after=30), ('stuck_after', 'is not a duration with a unit')),
    (dict(tenant_id='bad'), ('tenant_id', 'UUID')),
    (dict(tenant_id=''), ('tenant_id', 'UUID')),
    (dict(state='stuck'), ('state',)),
    (dict(state='cancelled', reason='stuck\x00'), ('reason', 'NUL')),
    (dict(batches_table='"unterminated'), ('batches_table',)),
])
def test_bad_options_are_refused_before_connecting(args, words):
    """Defect 12: stuck_after_minutes=99999999999 was a traceback (interval out of range). Every option is
    checked before connecting: the server given here does not exist, the message still names the option."""
    assert_refused(run_module('import_batch', dict(dict(login_host='127.0.0.1', login_port=9, state='cancelled'),
                                                   **args)), *words)
    if 'state' not in args and 'reason' not in args:
        assert_refused(run_module('import_batch_info', dict(login_host='127.0.0.1', login_port=9, **args)), *words)


@pytest.mark.parametrize('option', ['batches_table', 'contacts_table'])
@pytest.mark.parametrize('module, args', [('import_batch_info', {}), ('import_batch', dict(state='cancelled'))])
def test_missing_table_is_named(pg_db, pg_conn, stuck_db, option, module, args):
    """Defect 12: a missing batches_table or contacts_table was a traceback."""
    before = _batches(pg_conn)
    result = run_module(module, dict(pg_db, **dict(args, **{option: 'audit.no_such_table'})))
    assert_refused(result, '"audit"."no_such_table"', option, 'does not exist')
    assert _batches(pg_conn) == before


def test_result_has_no_ansible_status_key(pg_db, stuck_db):
    """Defect 4: the result carried a ``skipped`` list, which Ansible reads as the task's status."""
    result = run_module('import_batch', dict(pg_db, state='cancelled'))
    assert not result.failed, result
    assert 'skipped' not in result and result['no_longer_stuck'] == []
    info = run_module('import_batch_info', pg_db)
    assert not info.failed and 'skipped' not in info, info
