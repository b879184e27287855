"""Capacity report (runbook 6.1, 6.2) computed from known data in a real PostgreSQL."""

import re

import pytest
import yaml

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import capacity as cerniq_capacity, schema as cerniq_schema
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.rendered import default_rule_files


@pytest.fixture
def known_data(pg_conn):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    with pg_conn.cursor() as cur:
        # Day -2: 10 contacts processed in 60 s; day -1: 30 contacts processed in 120 s; day -40: outside the window.
        cur.execute("""
            INSERT INTO bronze_contacts (tenant_id, created_at, processed_at)
            SELECT '00000000-0000-0000-0000-000000000001', d, d + make_interval(secs => s)
            FROM (SELECT date_trunc('day', now()) - interval '2 days' + interval '1 hour' AS d, 60 AS s
                  FROM generate_series(1, 10)
                  UNION ALL SELECT date_trunc('day', now()) - interval '1 day' + interval '1 hour', 120
                  FROM generate_series(1, 30)
                  UNION ALL SELECT now() - interval '40 days', 5 FROM generate_series(1, 7)) x""")
        cur.execute("""
            INSERT INTO silver_enrichment_log (company_id, source, status, duration_ms, created_at)
            SELECT gen_random_uuid(), src, 'success', ms, date_trunc('day', now()) - interval '1 day' + interval '2 hours'
            FROM (VALUES ('anaf', 100), ('anaf', 300), ('termene', 50)) v(src, ms)""")
        cur.execute("""
            INSERT INTO approval_tasks (approval_type, due_at, created_at, decided_at, status)
            VALUES ('dedup_review', now(), date_trunc('day', now()) - interval '1 day' + interval '1 hour',
                    date_trunc('day', now()) - interval '1 day' + interval '3 hours', 'approved'),
                   ('dedup_review', now(), date_trunc('day', now()) - interval '1 day' + interval '1 hour', NULL,
                    'pending')""")
    return pg_conn


def test_series_match_the_data(known_data, pg_db):
    result = run_module('capacity_info', dict(pg_db, period='30 days'))
    assert not result.failed, result
    longer = run_module('capacity_info', dict(pg_db, period='6w'))   # reaches the day -40 contacts
    assert [row['contacts_ingested'] for row in longer['series']['ingestion']] == [7, 10, 30], longer
    for bad, words in ((30, 'is not a duration with a unit'), ('12h', 'period must be between 1d and 3660d')):
        refused = run_module('capacity_info', dict(pg_db, period=bad))
        assert refused.failed and words in refused['msg'], refused
    ingestion = result['series']['ingestion']
    assert [(row['contacts_ingested'], row['avg_processing_seconds']) for row in ingestion] == [(10, 60.0), (30, 120.0)]
    enrichment = {row['source']: row for row in result['series']['enrichment']}
    assert enrichment['anaf']['enrichments'] == 2 and enrichment['anaf']['avg_duration_ms'] == 200.0
    assert enrichment['termene']['enrichments'] == 1
    hitl = result['series']['hitl']
    assert len(hitl) == 1 and hitl[0]['tasks_created'] == 2 and hitl[0]['tasks_resolved'] == 1
    assert hitl[0]['avg_resolution_hours'] == 2.0
    assert result['changed'] is False


def test_thresholds_judged_per_object_with_scale_actions(known_data, pg_db):
    result = run_module('capacity_info', dict(pg_db, measurements=dict(
        queue_depth={'bronze:ingest:csv': 1200, 'silver:score:quality': 40}, processing_latency=1000, memory=50,
        disk='86.5')))
    verdicts = {(v['metric'], v['object']): v for v in result['verdicts']}
    # Per queue, never summed: 1200 + 40 would be judged as one queue otherwise.
    assert verdicts[('queue_depth', 'bronze:ingest:csv')]['status'] == 'warning'
    assert verdicts[('queue_depth', 'bronze:ingest:csv')]['action'] == 'Add workers'
    assert verdicts[('queue_depth', 'silver:score:quality')]['status'] == 'ok'
    assert verdicts[('processing_latency', None)]['status'] == 'critical'
    assert verdicts[('memory', None)]['status'] == 'ok' and verdicts[('memory', None)]['action'] is None
    assert verdicts[('disk', None)]['status'] == 'critical' and verdicts[('disk', None)]['action'] == 'Archive data'
    connections = [v for v in result['verdicts'] if v['metric'] == 'db_connections']
    assert len(connections) == 1 and connections[0]['status'] == 'ok'
    assert pg_db['login_db'] in connections[0]['object']
    assert 0 < result['connections']['used'] <= result['connections']['max']
    # On max_connections, as PostgresConnections (not on max minus the superuser reserve).
    assert result['connections']['percent'] == round(100.0 * result['connections']['used']
                                                     / result['connections']['max'], 1)
    assert {v['metric'] for v in result['exceeded']} == {'queue_depth', 'processing_latency', 'disk'}
    markdown = result['markdown']
    assert '| Disk usage | - | 86.5 % | > 70 | > 85 | CRITICAL | Archive data |' in markdown
    assert '| Queue depth (waiting) | bronze:ingest:csv | 1200 | > 1000 | > 5000 | WARNING | Add workers |' in markdown
    assert re.search(r'\| \d{4}-\d\d-\d\d \| 30 \| 120 \|', markdown)
    page = result['html']
    assert page.startswith('<!DOCTYPE html>') and '<svg' in page and '<script' not in page
    assert 'http' not in page.replace('http://www.w3.org/2000/svg', '')


def test_bad_input_is_refused(pg_db, known_data):
    assert 'must be a number' in run_module('capacity_info', dict(pg_db, measurements=dict(disk='full')))['msg']
    assert 'unknown threshold' in run_module('capacity_info', dict(pg_db, thresholds=dict(cpu={})))['msg']
    result = run_module('capacity_info', dict(pg_db, tables=dict(bronze_contacts='no_such_table')))
    assert result.failed and 'no_such_table' in result['msg']


def test_judge_boundaries():
    verdicts = {v['metric']: v['status'] for v in cerniq_capacity.judge(
        dict(queue_depth=1000, db_connections=60.1, memory=85, disk=None))}
    assert verdicts == dict(queue_depth='ok', db_connections='warning', memory='warning', disk='unknown',
                            processing_latency='unknown')


def _recorded_and_alerted():
    """record name -> expr, and series -> thresholds its alerts compare it with, from the rules the prometheus
    role renders with the settings' defaults."""
    records, limits = {}, {}
    for path in default_rule_files():
        with open(path) as handle:
            for group in yaml.safe_load(handle)['groups']:
                for rule in group['rules']:
                    if 'record' in rule:
                        records[rule['record']] = rule['expr']
                    match = re.match(r'^\s*([\w:]+) > ([\d.]+)\s*$', rule.get('expr', '')) if 'alert' in rule else None
                    if match:
                        limits.setdefault(match.group(1), set()).add(float(match.group(2)))
    return records, limits


def test_the_report_and_the_alerts_share_one_definition_per_metric():
    """Each 6.2 metric of the report is a recorded series of the rules, alerted on at the report's thresholds."""
    records, limits = _recorded_and_alerted()
    for metric, spec in cerniq_capacity.CAPACITY_SERIES.items():
        assert spec['series'] in records, '%s: %s is not recorded by the rules' % (metric, spec['series'])
        threshold = cerniq_capacity.DEFAULT_THRESHOLDS[metric]
        expected = {threshold['warning'] / spec['scale'], threshold['critical'] / spec['scale']}
        assert limits.get(spec['series']) == expected, (metric, limits.get(spec['series']), expected)
    # Latency as the rules define it: waiting over throughput, per queue.
    latency = ' '.join(records['queue:bullmq_processing_latency:seconds'].split())
    assert latency.startswith('queue:bullmq_jobs_waiting:sum / (queue:cerniq_worker_jobs_processed:rate10m > 0)')
