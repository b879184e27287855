"""Runbook 2.4 (quality score anomalies): cerniq.ops.quality_scores against a real PostgreSQL.

The incident (master companies without a total quality score) is injected with the synthetic data
engine. The CERNIQ scoring API cannot run here: scoring requests go to cerniq_testkit.http_recorder,
a small HTTP server on 127.0.0.1 that records each request so the test checks its path, bearer token
and JSON body; the test then plays the scoring worker and writes the scores.
"""

import json

import pytest

from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.results import assert_refused
from cerniq_testkit.http_recorder import HttpRecorder

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema, synthetic as cerniq_synthetic
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

SEED = '24'
TOKEN = 'scoring-token-xyz'


@pytest.fixture
def unscored(pg_db):
    conn = connect_postgres(pg_db)
    try:
        cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
        cerniq_synthetic.load(conn, SEED, dict(scale=0.1, tenants=1))
        return cerniq_synthetic.inject(conn, SEED, ['missing_scores'], dict(missing_scores=8))[
            'incidents']['missing_scores']['company_ids']
    finally:
        conn.close()


def _count(pg_conn, sql, *args):
    with pg_conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_report_reset_trigger_and_verify(pg_db, pg_conn, unscored):
    rep = run_module('quality_scores_info', pg_db)
    assert not rep.failed and not rep['changed'], rep
    assert rep['unscored_count'] == len(unscored) and rep['eligible_count'] == 8
    assert rep['stale_subscores_count'] == len(unscored)
    assert {'count': 8, 'enrichment_status': 'complete', 'promotion_status': 'pending'} in rep['unscored']
    assert rep['already_requested_count'] == 0 and 'requested_count' not in rep

    check = run_module('quality_scores', dict(pg_db, state='reset'), check_mode=True)
    assert not check.failed and check['changed'] and check['reset_count'] == len(unscored)
    assert _count(pg_conn, 'SELECT count(*) FROM silver_companies WHERE completeness_score IS NULL') == 0
    done = run_module('quality_scores', dict(pg_db, state='reset'))
    assert not done.failed and done['reset_count'] == len(unscored)
    assert _count(pg_conn, 'SELECT count(*) FROM silver_companies WHERE total_quality_score IS NULL AND '
                  '(completeness_score IS NOT NULL OR accuracy_score IS NOT NULL OR freshness_score IS NOT NULL)') == 0
    assert _count(pg_conn, 'SELECT count(*) FROM silver_companies WHERE completeness_score IS NULL') == len(unscored)
    assert not run_module('quality_scores', dict(pg_db, state='reset'))['changed']

    with HttpRecorder() as api:
        args = dict(pg_db, state='triggered', payload='company_ids', api_url=api.url, api_token=TOKEN, batch_size=3)
        check = run_module('quality_scores', args, check_mode=True)
        assert not check.failed and check['requested_count'] == 8 and check['batch_count'] == 3
        assert api.requests == []

        api.queued.append((500, {'error': 'boom'}))
        first = run_module('quality_scores', args)
        assert first.failed and 'HTTP 500' in first['msg'] and TOKEN not in json.dumps(first)
        assert first['requested_count'] == 5 and len(api.requests) == 3
        sent = [i for r in api.requests[1:] for i in r['body']['companyIds']]
        for request in api.requests:
            assert request['path'] == '/api/v1/internal/scoring/batch'
            assert request['headers']['Authorization'] == 'Bearer %s' % TOKEN
            assert set(request['body']) == {'companyIds', 'reason'} and len(request['body']['companyIds']) <= 3

        second = run_module('quality_scores', args)   # only the rejected batch is sent again
        assert not second.failed and second['requested_count'] == 3
        sent += api.requests[-1]['body']['companyIds']
        assert sorted(sent) == sorted(api.requests[0]['body']['companyIds'] + sent[:5])
        third = run_module('quality_scores', args)
        assert not third.failed and not third['changed'] and len(api.requests) == 4
    assert run_module('quality_scores_info', pg_db)['already_requested_count'] == 8

    eligible = set(sent)
    assert eligible <= set(unscored) and len(eligible) == 8
    with pg_conn.cursor() as cur:   # the scoring worker does its job
        cur.execute('UPDATE silver_companies SET completeness_score = 80, accuracy_score = 90, freshness_score = 70, '
                    "total_quality_score = 80, scored_at = now() WHERE id = ANY(%s::uuid[])", (sorted(eligible),))
    after = run_module('quality_scores_info', pg_db)
    assert after['eligible_count'] == 0 and after['unscored_count'] == len(unscored) - 8
    assert after['already_requested_count'] == 0   # scored now, so no longer eligible


def test_failed_batches_survive_the_failure(pg_db, unscored):
    """Defect 4: the ``failed`` list of rejected batches was overwritten by fail_json's ``failed: true``."""
    with HttpRecorder() as api:
        api.queued.append((500, {'error': 'boom'}))
        result = run_module('quality_scores', dict(pg_db, state='triggered', payload='company_ids', api_url=api.url,
                                                   api_token=TOKEN, batch_size=3))
    assert_refused(result, 'HTTP 500', 'boom')
    assert result['failed'] is True and result['changed'] is True
    assert [(f['count'], f['api_status']) for f in result['failed_batches']] == [(3, 500)]
    assert result['requested_count'] == 5


@pytest.mark.parametrize('args, words', [
    (dict(limit=0, payload='company_ids'), ('limit', 'between 1 and')),
    (dict(limit=5), ('limit', 'payload=company_ids')),
    (dict(payload='ids'), ('payload', 'query')),
    (dict(batch_size=0), ('batch_size',)),
    (dict(retrigger_after='9999 weeks'), ('retrigger_after', 'between 0s and 365d')),
    (dict(retrigger_after=60), ('retrigger_after', 'is not a duration with a unit')),
    (dict(state='report'), ('state',)),
    (dict(tenant_id='bad'), ('tenant_id', 'UUID')),
    (dict(enrichment_statuses=[]), ('enrichment_statuses',)),
    (dict(reason='\x00'), ('reason', 'NUL')),
    (dict(api_url='not a url'), ('api_url',)),
    (dict(api_token='a\nb'), ('api_token', 'one line')),
])
def test_bad_options_are_refused_before_connecting(args, words):
    """limit=0 (max_companies before 1.0.0) meant no limit; unbounded values reached PostgreSQL. Checked before connecting: the
    server given here does not exist, the message still names the option."""
    base = dict(login_host='127.0.0.1', login_port=9, state='triggered', api_url='http://127.0.0.1:9',
                api_token=TOKEN)
    assert_refused(run_module('quality_scores', dict(base, **args)), *words)


def test_missing_table_is_named(pg_db, unscored):
    for module, args in (('quality_scores_info', {}), ('quality_scores', dict(state='reset'))):
        result = run_module(module, dict(pg_db, companies_table='nope', **args))
        assert_refused(result, '"nope"', 'companies_table', 'does not exist')


def test_limit_caps_what_is_sent(pg_db, pg_conn, unscored):
    with HttpRecorder() as api:
        args = dict(pg_db, state='triggered', payload='company_ids', api_url=api.url, api_token=TOKEN, batch_size=2,
                    limit=3)
        check = run_module('quality_scores', args, check_mode=True)
        assert not check.failed and check['requested_count'] == 3 and api.requests == []
        done = run_module('quality_scores', args)
        assert not done.failed and done['requested_count'] == 3
        assert [len(r['body']['companyIds']) for r in api.requests] == [2, 1]
    assert _count(pg_conn, 'SELECT count(*) FROM silver_companies WHERE scoring_requested_at IS NOT NULL') == 3


def test_trigger_sends_the_runbook_query(pg_db, pg_conn, unscored):
    """Issue 17 item 8: runbook 2.4's contract is ``{"query": ...}``; the module sent ``{"companyIds": ...}``."""
    query = 'total_quality_score IS NULL AND enrichment_status = complete'
    with HttpRecorder() as api:
        args = dict(pg_db, state='triggered', api_url=api.url, api_token=TOKEN)
        check = run_module('quality_scores', args, check_mode=True)
        assert not check.failed and check['changed'] and check['requested_count'] == 8, check
        assert check['query'] == query and api.requests == []

        api.queued.append((503, {'error': 'busy'}))
        refused = run_module('quality_scores', args)
        assert refused.failed and 'HTTP 503' in refused['msg'] and TOKEN not in json.dumps(refused)
        assert [(f['count'], f['api_status']) for f in refused['failed_batches']] == [(8, 503)]
        assert _count(pg_conn, 'SELECT count(*) FROM silver_companies WHERE scoring_requested_at IS NOT NULL') == 0

        done = run_module('quality_scores', args)
        assert not done.failed and done['changed'] and done['requested_count'] == 8, done
        assert [r['body'] for r in api.requests] == [{'query': query}] * 2
        assert api.requests[-1]['path'] == '/api/v1/internal/scoring/batch'
        assert api.requests[-1]['headers']['Authorization'] == 'Bearer %s' % TOKEN
        marked = _count(pg_conn, 'SELECT count(*) FROM silver_companies WHERE scoring_requested_at IS NOT NULL')
        assert marked == 8 and done['batches'] == [{'count': 8, 'api_status': 200}]

        again = run_module('quality_scores', args)   # every eligible company was just requested
        assert not again.failed and not again['changed'] and len(api.requests) == 2

        tenant = run_module('quality_scores', dict(args, retrigger_after='0s',
                                                   enrichment_statuses=['complete', 'partial'],
                                                   tenant_id='00000000-0000-0000-0000-000000000001'),
                            check_mode=True)
        assert tenant['query'] == ('total_quality_score IS NULL AND enrichment_status IN (complete, partial) '
                                   'AND tenant_id = 00000000-0000-0000-0000-000000000001')


@pytest.mark.parametrize('payload', ['company_ids', 'query'])
def test_a_marker_the_database_refuses_stops_the_run_before_any_call(pg_db, pg_conn, unscored, payload):
    """Found by the 10x hostile hunt: the scoring request went out, then the UPDATE of scoring_requested_at was
    rejected, so the run failed having sent companies it could not mark (a rerun sends them again)."""
    _count(pg_conn, "CREATE FUNCTION reject() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$BEGIN RAISE EXCEPTION 'updates of silver_companies are rejected'; END$$; "
                    "CREATE TRIGGER reject BEFORE UPDATE ON silver_companies FOR EACH ROW EXECUTE FUNCTION reject(); "
                    "SELECT 1")
    with HttpRecorder() as api:
        result = run_module('quality_scores', dict(pg_db, state='triggered', payload=payload, api_url=api.url,
                                                   api_token=TOKEN, batch_size=2))
        assert result.failed and 'updates of silver_companies are rejected' in result['msg'], result
        assert '\n' not in result['msg'].strip()
        assert api.requests == []
    assert _count(pg_conn, 'SELECT count(*) FROM silver_companies WHERE scoring_requested_at IS NOT NULL') == 0
