"""Runbook 2.3 (HITL SLA breach): cerniq.ops.approval_tasks against a real PostgreSQL.

The incident (overdue pending tasks, an overloaded operator) is injected with the synthetic data
engine. The CERNIQ HITL API cannot run here: escalations go to cerniq_testkit.http_recorder, a small
HTTP server on 127.0.0.1 that records each request so the test checks path, bearer token and JSON body.
"""

import json

import pytest

from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.results import assert_refused
from cerniq_testkit.http_recorder import HttpRecorder

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema, synthetic as cerniq_synthetic
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

SEED = '23'
TOKEN = 'tok-secret-123'


@pytest.fixture
def breach(pg_db):
    conn = connect_postgres(pg_db)
    try:
        cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
        cerniq_synthetic.load(conn, SEED, dict(scale=0.05, tenants=1))
        return cerniq_synthetic.inject(conn, SEED, ['sla_breach'])['incidents']['sla_breach']
    finally:
        conn.close()


def _one(pg_conn, sql, *args):
    with pg_conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def test_report_and_release(pg_db, pg_conn, breach):
    rep = run_module('approval_tasks_info', pg_db)
    assert not rep.failed and not rep['changed'], rep
    assert rep['breached_count'] == len(breach['overdue_task_ids']) and rep['overloaded_count'] == 1
    assert run_module('approval_tasks_info', pg_db, check_mode=True)['breached'] == rep['breached']
    assert sorted(t['id'] for t in rep['breached']) == sorted(breach['overdue_task_ids'])
    assert [o['user_id'] for o in rep['overloaded']] == [breach['overloaded_operator_id']]
    assert rep['overloaded'][0]['pending_tasks'] > 10 and rep['overloaded'][0]['avg_wait_hours'] > 0

    check = run_module('approval_tasks', dict(pg_db, state='released'), check_mode=True, diff=True)
    assert not check.failed and check['changed'] and len(check['released']) == 7, check
    assert breach['overloaded_operator_id'] in check['diff']['before']
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE status = 'assigned' AND assigned_to = %s",
                breach['overloaded_operator_id'])[0] == 15

    done = run_module('approval_tasks', dict(pg_db, state='released', due_within='2h'))
    assert not done.failed and done['changed'] and len(done['released']) == 7
    released = [t['id'] for t in done['released']]
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND status = 'pending' "
                "AND assigned_to IS NULL", released)[0] == 7
    # the tasks due later stay with the operator; a rerun changes nothing
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE status = 'assigned' AND assigned_to = %s",
                breach['overloaded_operator_id'])[0] == 8
    again = run_module('approval_tasks', dict(pg_db, state='released'))
    assert not again.failed and not again['changed']

    bad = run_module('approval_tasks', dict(pg_db, state='released', operators=['nobody@cerniq.invalid']))
    assert bad.failed and 'nobody@cerniq.invalid' in bad['msg']


def test_release_to_a_named_operator(pg_db, pg_conn, breach):
    """Issue 17 item 11: redistribution can target a named operator (``assign_to``) instead of the pool; the
    target must be an active user other than the released operators."""
    overloaded = breach['overloaded_operator_id']
    helper = cerniq_synthetic.operator_id(SEED, 1, 4)
    assert helper != overloaded
    args = dict(pg_db, state='released', operators=[overloaded], assign_to='OPERATOR4.t1.s%s@cerniq.invalid' % SEED)
    check = run_module('approval_tasks', args, check_mode=True, diff=True)
    assert not check.failed and len(check['released']) == 7 and check['assigned_to'] == helper, check
    assert 'assigned to %s' % helper in check['diff']['after']
    done = run_module('approval_tasks', args)
    assert not done.failed and done['changed'] and done['assigned_to'] == helper
    moved = [t['id'] for t in done['released']]
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND status = 'assigned' "
                "AND assigned_to = %s", moved, helper)[0] == 7
    assert not run_module('approval_tasks', args)['changed']

    itself = run_module('approval_tasks', dict(args, assign_to=overloaded))
    assert_refused(itself, 'assign_to', 'one of the operators')
    with pg_conn.cursor() as cur:
        cur.execute('UPDATE users SET is_active = false WHERE id = %s', (helper,))
    for option in ('assign_to', 'escalate_to'):
        state = 'released' if option == 'assign_to' else 'escalated'
        refused = run_module('approval_tasks', dict(pg_db, state=state, api_url='http://127.0.0.1:9',
                                                    api_token=TOKEN, **{option: helper}))
        assert_refused(refused, option, 'not active')
    unknown = run_module('approval_tasks', dict(pg_db, state='released', assign_to='nobody@cerniq.invalid'))
    assert_refused(unknown, 'assign_to', 'nobody@cerniq.invalid')


def test_escalate_once_through_the_api(pg_db, pg_conn, breach):
    manager = breach['manager_id']
    with HttpRecorder() as api:
        failing = breach['overdue_task_ids'][0]
        api.responses['/api/v1/approvals/%s/escalate' % failing] = (503, {'error': 'unavailable'})
        args = dict(pg_db, state='escalated', api_url=api.url, api_token=TOKEN)

        check = run_module('approval_tasks', args, check_mode=True)
        assert not check.failed and len(check['escalated']) == 8 and api.requests == []

        first = run_module('approval_tasks', args, diff=True)
        assert first.failed and failing in first['msg'] and 'HTTP 503' in first['msg']
        assert TOKEN not in json.dumps(first) and TOKEN not in first.stderr
        assert len(first['escalated']) == 7 and len(first['not_escalated']) == 4   # 4 unassigned tasks: no manager
        assert len(api.requests) == 8
        request = api.requests[-1]
        assert request['headers']['Authorization'] == 'Bearer %s' % TOKEN
        assert request['headers']['Content-Type'] == 'application/json'
        assert request['body'] == {'escalateTo': manager, 'reason': 'SLA breach - manual escalation'}
        assert request['path'].startswith('/api/v1/approvals/') and request['path'].endswith('/escalate')
        assert _one(pg_conn, 'SELECT escalation_level, escalated_at FROM approval_tasks WHERE id = %s',
                    failing) == (0, None)
        assert _one(pg_conn, 'SELECT count(*), min(level), max(escalated_to::text) FROM approval_task_escalations')\
            == (7, 1, manager)

        # the API is back: only the failed task is sent again
        del api.responses['/api/v1/approvals/%s/escalate' % failing]
        second = run_module('approval_tasks', args)
        assert not second.failed and [t['id'] for t in second['escalated']] == [failing]
        assert len(api.requests) == 9
        third = run_module('approval_tasks', args)
        assert not third.failed and not third['changed'] and len(api.requests) == 9

        # unassigned breached tasks go to the fallback target
        email = 'MANAGER2.t1.s%s@cerniq.invalid' % SEED
        fourth = run_module('approval_tasks', dict(args, fallback_escalate_to=email))
        assert not fourth.failed and len(fourth['escalated']) == 4
        assert {r['body']['escalateTo'] for r in api.requests[9:]} == {cerniq_synthetic.manager_id(SEED, 1, 2)}
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE status = 'pending' AND due_at < now() "
                "AND escalation_level = 1 AND escalated_at IS NOT NULL")[0] == 12


def test_escalate_unreachable_api_changes_nothing(pg_db, pg_conn, breach):
    result = run_module('approval_tasks', dict(pg_db, state='escalated', api_url='http://127.0.0.1:9',
                                               api_token=TOKEN, timeout='5s'))
    assert result.failed and 'request failed' in result['msg'] and TOKEN not in json.dumps(result)
    assert _one(pg_conn, 'SELECT count(*) FROM approval_tasks WHERE escalation_level > 0')[0] == 0


def test_auto_approve_by_policy(pg_db, pg_conn, breach):
    with pg_conn.cursor() as cur:  # a confidence that is not a number is never approved, never an error
        cur.execute("INSERT INTO approval_tasks (approval_type, status, due_at, metadata) VALUES "
                    "('dedup_review', 'pending', now() - interval '1 hour', '{\"confidence\": \"high\"}')")
    args = dict(pg_db, state='approved', approval_types=['dedup_review'], min_confidence=0.9)
    check = run_module('approval_tasks', dict(args, limit=1), check_mode=True)
    assert not check.failed and len(check['approved']) == 1
    first = run_module('approval_tasks', dict(args, limit=1), diff=True)
    assert not first.failed and len(first['approved']) == 1 and first['approved'][0]['confidence'] == 0.96
    rest = run_module('approval_tasks', args)
    assert not rest.failed and [t['confidence'] for t in rest['approved']] == [0.92]
    assert not run_module('approval_tasks', args)['changed']
    ids = [first['approved'][0]['id'], rest['approved'][0]['id']]
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND status = 'approved' "
                "AND decision = 'approve' AND decided_by = 'cerniq.ops auto-approve' "
                "AND decision_reason = 'Auto-approved due to SLA breach' AND decided_at IS NOT NULL", ids)[0] == 2
    # lower-confidence and other-type breached tasks are still waiting for a human
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE status = 'pending' AND due_at < now()")[0] == 11
    bad = run_module('approval_tasks', dict(args, approval_types=[]))
    assert bad.failed and 'approval_types' in bad['msg']


def test_task_locked_by_another_run_is_not_escalated(pg_db, pg_conn, breach):
    import psycopg2
    other = psycopg2.connect(host=pg_db['login_host'], port=pg_db['login_port'], dbname=pg_db['login_db'],
                             user=pg_db['login_user'], password=pg_db['login_password'])
    busy = breach['overdue_task_ids'][0]
    try:
        with other.cursor() as cur:   # another escalation run holds this task
            cur.execute('SELECT 1 FROM approval_tasks WHERE id = %s FOR UPDATE', (busy,))
        with HttpRecorder() as api:
            result = run_module('approval_tasks', dict(pg_db, state='escalated', api_url=api.url, api_token=TOKEN))
            assert not result.failed, result
            assert busy in [s['id'] for s in result['not_escalated']]
            assert all(busy not in r['path'] for r in api.requests) and len(api.requests) == 7
    finally:
        other.rollback()
        other.close()
    assert _one(pg_conn, 'SELECT escalation_level FROM approval_tasks WHERE id = %s', busy)[0] == 0


def _tasks_state(pg_conn):
    return _one(pg_conn, "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM approval_tasks t"), \
        _one(pg_conn, 'SELECT count(*) FROM approval_task_escalations')[0]


ESCALATE_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Escalate
      cerniq.ops.approval_tasks: "{{ escalate_args }}"
      register: escalation
      ignore_errors: "{{ expect_failure }}"
    - name: Check what Ansible made of the result
      ansible.builtin.assert:
        that:
          - escalation is not skipped
          - (escalation is changed) == (escalation.escalated | length > 0)
          - (escalation is failed) == expect_failure
          - escalation.not_escalated | map(attribute='id') | list | length == expected_not_escalated | int
          - escalation.escalation_failures | length == expected_failures | int
"""


def test_escalation_result_is_not_read_as_skipped_or_failed(pg_db, pg_conn, breach, tmp_path):
    """Defect 4: a list named ``skipped`` made an acting escalation show as ``skipping``; a ``failed`` list was
    overwritten by fail_json. The renamed lists keep their content and Ansible reports the real status."""
    from cerniq_testkit.ansible_run import run_playbook
    play = tmp_path / 'escalate.yml'
    play.write_text(ESCALATE_PLAY)
    with HttpRecorder() as api:
        args = dict(pg_db, state='escalated', api_url=api.url, api_token=TOKEN)
        failing = breach['overdue_task_ids'][0]
        api.responses['/api/v1/approvals/%s/escalate' % failing] = (503, {'error': 'unavailable'})
        first = run_playbook(str(play), extra_vars=dict(escalate_args=args, expect_failure=True,
                                                        expected_not_escalated=4, expected_failures=1))
        assert first.returncode == 0, first.stdout
        assert 'skipping: [localhost]' not in first.stdout and 'skipped=0' in first.stdout, first.stdout
        del api.responses['/api/v1/approvals/%s/escalate' % failing]
        second = run_playbook(str(play), extra_vars=dict(escalate_args=args, expect_failure=False,
                                                         expected_not_escalated=4, expected_failures=0))
        assert second.returncode == 0, second.stdout
        assert 'changed: [localhost]' in second.stdout and 'skipped=0' in second.stdout, second.stdout
        assert len(api.requests) == 9
    assert _one(pg_conn, 'SELECT count(*) FROM approval_task_escalations')[0] == 8


def test_max_tasks_counts_escalations_sent(pg_db, pg_conn, breach):
    """Defect 11: limit=1 escalated nothing (the limit counted the unassigned tasks it then skipped) and 0
    meant unlimited. Now a limit counts escalations sent; 0 and negative limits are refused like max_count."""
    with HttpRecorder() as api:
        args = dict(pg_db, state='escalated', api_url=api.url, api_token=TOKEN)
        for limit in (0, -1):
            assert_refused(run_module('approval_tasks', dict(args, limit=limit)), 'limit', 'between 1 and')
        assert api.requests == []
        check = run_module('approval_tasks', dict(args, limit=2), check_mode=True)
        assert not check.failed and len(check['escalated']) == 2 and api.requests == []
        one = run_module('approval_tasks', dict(args, limit=1))
        assert not one.failed and len(one['escalated']) == 1 and len(api.requests) == 1, one
        over = [t for t in one['not_escalated'] if 'over limit' in t['reason']]
        assert len(over) == 7 and len(one['not_escalated']) == 11
        rest = run_module('approval_tasks', dict(args, limit=100))
        assert not rest.failed and len(rest['escalated']) == 7 and len(api.requests) == 8
    assert _one(pg_conn, 'SELECT count(*) FROM approval_task_escalations')[0] == 8
    approve = dict(pg_db, state='approved', approval_types=['dedup_review'])
    for limit in (0, -1):
        assert_refused(run_module('approval_tasks', dict(approve, limit=limit)), 'limit', 'between 1 and')


@pytest.mark.parametrize('args, words', [
    (dict(state='released', tenant_id='bad'), ('tenant_id', 'UUID')),
    (dict(state='released', due_within='9999 weeks'), ('due_within', 'between 0s and 365d')),
    (dict(state='released', due_within=120), ('due_within', 'is not a duration with a unit')),
    (dict(state='escalated', limit=-1), ('limit',)),
    (dict(state='escalated', task_ids=['x']), ('task_ids[0]', 'UUID')),
    (dict(state='escalated', reason='a\x00b'), ('reason', 'NUL')),
    (dict(state='escalated', api_url='ftp://x'), ('api_url',)),
    (dict(state='escalated', timeout='0s'), ('timeout must be between 1s and 1h',)),
    (dict(state='escalated', timeout=30), ('timeout', 'is not a duration with a unit')),
    (dict(state='approved', min_confidence=float('nan')), ('min_confidence',)),
    (dict(state='released', operators=[]), ('operators',)),
    (dict(state='approved', tasks_table='a.b.c'), ('tasks_table',)),
    (dict(state='released', max_tasks_per_operator=-5), ('max_tasks_per_operator',)),
    (dict(), ('state',)),
    (dict(state='report'), ('state',)),
])
def test_bad_options_are_refused_before_connecting(args, words):
    """Defect 12: tracebacks for tenant_id=bad, window_minutes=999999999999, max_tasks=-1. Every option is
    checked before connecting: the server given here does not exist, the message still names the option."""
    base = dict(login_host='127.0.0.1', login_port=9, login_db='nowhere', api_url='http://127.0.0.1:9',
                api_token=TOKEN)
    assert_refused(run_module('approval_tasks', dict(base, **args)), *words)


@pytest.mark.parametrize('state, option', [(None, 'tasks_table'), ('released', 'users_table'),
                                           ('escalated', 'escalations_table'), ('approved', 'tasks_table')])
def test_missing_table_is_named_before_anything_changes(pg_db, pg_conn, breach, state, option):
    """Defect 12: a missing tasks_table was a traceback. Each state (and the info module) checks its tables first."""
    before = _tasks_state(pg_conn)
    with HttpRecorder() as api:
        if state is None:
            result = run_module('approval_tasks_info', dict(pg_db, **{option: 'no_such_table'}))
        else:
            result = run_module('approval_tasks', dict(pg_db, state=state, api_url=api.url, api_token=TOKEN,
                                                       **{option: 'no_such_table'}))
        assert_refused(result, '"no_such_table"', option, 'does not exist')
        assert api.requests == []
    assert _tasks_state(pg_conn) == before


def test_a_failing_escalation_record_stops_before_the_call(pg_db, pg_conn, breach):
    """The escalation is written before the API call: when the write fails (here a constraint of the audit
    table) no call is made, so a rerun cannot escalate twice; the error is one line."""
    with pg_conn.cursor() as cur:
        cur.execute('ALTER TABLE approval_task_escalations ADD CONSTRAINT refuse_all CHECK (level < 0) NOT VALID')
    before = _tasks_state(pg_conn)
    with HttpRecorder() as api:
        result = run_module('approval_tasks', dict(pg_db, state='escalated', api_url=api.url, api_token=TOKEN))
        assert_refused(result, 'PostgreSQL error', 'refuse_all')
        assert api.requests == []
    assert _tasks_state(pg_conn) == before


def test_out_of_range_confidences_are_never_an_error(pg_db, pg_conn, breach):
    """Found by the hostile layer: a confidence of 1e400 matched the number pattern and its float cast failed the
    whole report. A confidence that is not a number in [0, 1] is NULL: reported as such, never approved."""
    with pg_conn.cursor() as cur:
        for value in ('1e400', '2', '-0.5', 'NaN', '1' * 30, '0.95e999'):
            cur.execute("INSERT INTO approval_tasks (approval_type, status, due_at, metadata) VALUES "
                        "('dedup_review', 'pending', now() - interval '1 hour', jsonb_build_object('confidence', %s))",
                        (value,))
    rep = run_module('approval_tasks_info', pg_db)
    assert not rep.failed, rep
    assert sum(1 for t in rep['breached'] if t['confidence'] is None) >= 6
    approved = run_module('approval_tasks', dict(pg_db, state='approved', approval_types=['dedup_review']))
    assert not approved.failed and [t['confidence'] for t in approved['approved']] == [0.96, 0.92], approved
