"""Runbook playbooks 2.2, 2.3 and 2.4 end to end (2.1 is in test_import_batch.py).

Each incident is injected with the synthetic data engine into a real PostgreSQL / Redis, the
playbook runs on localhost with cerniq_confirm=true (the AWX path), and the fix is checked in the
data. The CERNIQ HITL and scoring APIs cannot run here: they are replaced by
cerniq_testkit.http_recorder, a small HTTP server on 127.0.0.1 that records each request.
"""

import os
import re

import pytest

from cerniq_testkit.ansible_run import REPO, run_playbook
from cerniq_testkit.http_recorder import HttpRecorder

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema, synthetic as cerniq_synthetic
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

SEED = '31'
TOKEN = 'runbook-token-secret'


def _playbook(name):
    return os.path.join(REPO, 'playbooks', 'runbook', name)


@pytest.fixture
def incident(pg_db, redis_client):
    def inject(names, **options):
        conn = connect_postgres(pg_db)
        try:
            cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
            cerniq_synthetic.load(conn, SEED, dict(scale=0.05, tenants=1))
            return cerniq_synthetic.inject(conn, SEED, names, options, redis_client=redis_client)['incidents']
        finally:
            conn.close()
    return inject


def _one(pg_conn, sql, *args):
    with pg_conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def test_sla_breach_playbook(pg_db, pg_conn, incident):
    breach = incident(['sla_breach'])['sla_breach']
    with HttpRecorder() as api:
        extra = dict(cerniq_postgres=pg_db, cerniq_api_url=api.url, cerniq_api_token=TOKEN,
                     cerniq_escalate_fallback='manager2.t1.s%s@cerniq.invalid' % SEED, cerniq_auto_approve=True)
        report = run_playbook(_playbook('sla_breach.yml'), extra_vars=extra)
        assert report.returncode == 0, report.stdout
        assert 'Report only' in report.stdout and api.requests == []

        fixed = run_playbook(_playbook('sla_breach.yml'), extra_vars=dict(extra, cerniq_confirm=True))
        assert fixed.returncode == 0, fixed.stdout
        assert TOKEN not in fixed.stdout
        # 2 confident dedup reviews auto-approved after escalation; every breached task escalated once
        assert len(api.requests) == 12
        targets = sorted(r['body']['escalateTo'] for r in api.requests)
        assert targets.count(breach['manager_id']) == 8    # the overloaded operator's manager
        assert targets.count(cerniq_synthetic.manager_id(SEED, 1, 2)) == 4   # unassigned: the fallback
        assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND escalation_level = 1",
                    breach['overdue_task_ids'])[0] == 12
        assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND status = 'approved' "
                    "AND decided_by = 'cerniq.ops auto-approve'", breach['overdue_task_ids'])[0] == 2
        assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE assigned_to = %s AND status = 'assigned' "
                    "AND due_at < now() + interval '2 hours'", breach['overloaded_operator_id'])[0] == 0

        again = run_playbook(_playbook('sla_breach.yml'), extra_vars=dict(extra, cerniq_confirm=True))
        assert again.returncode == 0, again.stdout
        assert len(api.requests) == 12 and 'changed=0' in again.stdout


def test_sla_breach_playbook_targets_named_users(pg_db, pg_conn, incident):
    """Issue 17 item 11: the runbook's <overloaded_user_id> and <manager_user_id> as playbook options
    (cerniq_release_operators, cerniq_escalate_to) and a named operator for the released tasks
    (cerniq_redistribute_to)."""
    breach = incident(['sla_breach'])['sla_breach']
    helper = cerniq_synthetic.operator_id(SEED, 1, 4)
    manager = cerniq_synthetic.manager_id(SEED, 1, 2)
    with HttpRecorder() as api:
        extra = dict(cerniq_postgres=pg_db, cerniq_api_url=api.url, cerniq_api_token=TOKEN,
                     cerniq_release_operators=[breach['overloaded_operator_id']],
                     cerniq_redistribute_to='operator4.t1.s%s@cerniq.invalid' % SEED,
                     cerniq_escalate_to='manager2.t1.s%s@cerniq.invalid' % SEED)
        report = run_playbook(_playbook('sla_breach.yml'), extra_vars=extra)
        assert report.returncode == 0 and api.requests == [], report.stdout
        assert '7 task(s) of %s due within 120 min would go to operator4' % breach['overloaded_operator_id'] \
            in report.stdout, report.stdout
        assert '12 breached task(s) would be escalated to manager2' in report.stdout

        fixed = run_playbook(_playbook('sla_breach.yml'), extra_vars=dict(extra, cerniq_confirm=True))
        assert fixed.returncode == 0, fixed.stdout
        assert sorted(r['body']['escalateTo'] for r in api.requests) == [manager] * 12
        assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE assigned_to = %s AND status = 'assigned' "
                    "AND due_at < now() + interval '2 hours'", breach['overloaded_operator_id'])[0] == 0
        assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE assigned_to = %s AND status = 'assigned' "
                    "AND due_at < now() + interval '2 hours'", helper)[0] >= 7

        again = run_playbook(_playbook('sla_breach.yml'), extra_vars=dict(extra, cerniq_confirm=True))
        assert again.returncode == 0 and len(api.requests) == 12 and 'changed=0' in again.stdout, again.stdout

    inactive = dict(extra, cerniq_escalate_to='nobody@cerniq.invalid', cerniq_confirm=True)
    stopped = run_playbook(_playbook('sla_breach.yml'), extra_vars=inactive)
    assert stopped.returncode != 0 and 'escalate_to: unknown user(s): nobody@cerniq.invalid' in stopped.stdout


def test_sla_breach_playbook_without_api_verifies_what_it_did(pg_db, pg_conn, incident):
    """Issue 13 defect 4 / issue 15: without cerniq_api_url the escalation task is skipped; the verify step read
    the skipped task's ``skipped: true`` as the module's list (a Jinja error) or passed on ``is skipped``
    without checking anything. It now checks the real outcomes and says that escalation is not configured."""
    breach = incident(['sla_breach'])['sla_breach']
    extra = dict(cerniq_postgres=pg_db, cerniq_confirm=True, cerniq_auto_approve=True)
    fixed = run_playbook(_playbook('sla_breach.yml'), extra_vars=extra)
    assert fixed.returncode == 0, fixed.stdout
    assert 'escalation not configured' in fixed.stdout and '10 breached task(s)' in fixed.stdout, fixed.stdout
    assert _one(pg_conn, "SELECT count(*) FROM approval_tasks WHERE id = ANY(%s::uuid[]) AND status = 'approved'",
                breach['overdue_task_ids'])[0] == 2
    assert _one(pg_conn, 'SELECT count(*) FROM approval_tasks WHERE escalation_level > 0')[0] == 0


def test_quality_anomalies_playbook(pg_db, pg_conn, incident):
    company_ids = incident(['missing_scores'], missing_scores=5)['missing_scores']['company_ids']
    with HttpRecorder() as api:
        extra = dict(cerniq_postgres=pg_db, cerniq_api_url=api.url, cerniq_api_token=TOKEN, cerniq_confirm=True,
                     cerniq_scoring_batch_size=2, cerniq_scoring_payload='company_ids')
        fixed = run_playbook(_playbook('quality_anomalies.yml'), extra_vars=extra)
        assert fixed.returncode == 0, fixed.stdout
        sent = sorted(i for r in api.requests for i in r['body']['companyIds'])
        assert len(api.requests) == 3 and len(sent) == 5 and set(sent) <= set(company_ids)
    assert _one(pg_conn, 'SELECT count(*) FROM silver_companies WHERE total_quality_score IS NULL '
                'AND completeness_score IS NOT NULL')[0] == 0
    assert _one(pg_conn, 'SELECT count(*) FROM silver_companies WHERE id = ANY(%s::uuid[]) '
                'AND scoring_requested_at IS NOT NULL', sent)[0] == 5


def test_quality_anomalies_playbook_sends_the_runbook_query(pg_db, pg_conn, incident):
    """Issue 17 item 8: by default the scoring request is the runbook's ``{"query": ...}``, one request."""
    incident(['missing_scores'], missing_scores=5)
    with HttpRecorder() as api:
        extra = dict(cerniq_postgres=pg_db, cerniq_api_url=api.url, cerniq_api_token=TOKEN, cerniq_confirm=True)
        fixed = run_playbook(_playbook('quality_anomalies.yml'), extra_vars=extra)
        assert fixed.returncode == 0, fixed.stdout
        assert [r['body'] for r in api.requests] == [
            {'query': 'total_quality_score IS NULL AND enrichment_status = complete'}]
    assert _one(pg_conn, 'SELECT count(*) FROM silver_companies WHERE scoring_requested_at IS NOT NULL')[0] == 5


def test_rate_limiting_playbook(pg_db, redis_params, redis_client, incident):
    injected = incident(['circuit_open'], delayed_jobs=5)['circuit_open']
    assert redis_client.get('circuit:anaf:state') == b'OPEN'
    extra = dict(cerniq_redis=redis_params, cerniq_confirm=True)
    fixed = run_playbook(_playbook('rate_limiting.yml'), extra_vars=extra)
    assert fixed.returncode == 0, fixed.stdout
    assert redis_client.get('circuit:anaf:state') is None and redis_client.get('circuit:anaf:failures') is None
    # without cerniq_promote_delayed the backoff keeps running: delayed jobs stay delayed
    assert redis_client.zcard('bull:silver:enrich:anaf-fiscal-status:delayed') == len(injected['delayed_job_ids'])
    # the injected rate budget is still used up: rate limiting goes on (runbook step 1: wait for its reset),
    # the run acts again but has nothing left to change
    again = run_playbook(_playbook('rate_limiting.yml'), extra_vars=extra)
    assert again.returncode == 0 and 'changed=0' in again.stdout and '"Reset: none"' in again.stdout, again.stdout
    redis_client.delete('rate_limit:anaf:remaining')
    calm = run_playbook(_playbook('rate_limiting.yml'), extra_vars=extra)
    assert calm.returncode == 0 and 'Nothing to fix' in calm.stdout, calm.stdout


def test_rate_limiting_playbook_follows_the_key_overrides(pg_db, redis_params, redis_client, incident):
    """Issue 17 item 9: a site whose breakers live under other keys (cerniq_circuit_*_key, the role's
    variables) had them ignored: 'Nothing to fix' while the breaker stayed OPEN."""
    keys = dict(cerniq_circuit_state_key='cb:{source}:st', cerniq_circuit_failures_key='cb:{source}:n',
                cerniq_rate_limit_key='cb:{source}:budget')
    incident(['circuit_open'], delayed_jobs=2, circuit_state_key=keys['cerniq_circuit_state_key'],
             circuit_failures_key=keys['cerniq_circuit_failures_key'])
    redis_client.set('cb:anaf:budget', 7)
    assert redis_client.get('cb:anaf:state') is None and redis_client.get('cb:anaf:st') == b'OPEN'
    extra = dict(keys, cerniq_redis=redis_params, cerniq_confirm=True)
    fixed = run_playbook(_playbook('rate_limiting.yml'), extra_vars=extra)
    assert fixed.returncode == 0, fixed.stdout
    assert '"Reset: anaf"' in fixed.stdout, fixed.stdout
    assert redis_client.get('cb:anaf:st') is None and redis_client.get('cb:anaf:n') is None
    assert redis_client.get('cb:anaf:budget') == b'7'
    # the diagnosis read the overridden failure and budget keys too
    assert re.search(r'"anaf +OPEN +12 +7 ', fixed.stdout), fixed.stdout


DECIDE_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_tasks: %s
      vars:
        cerniq_problem_found: true
        cerniq_decision_problem: "Test problem."
        cerniq_decision_actions: ["fix the test problem"]
    - ansible.builtin.debug:
        msg: "DECISION={{ cerniq_act }}"
"""


def _run_on_terminal(playbook, answer, limit=600, extra_args=()):
    """ansible-playbook on a pseudo-terminal (its controlling TTY); answers the prompt when it appears.
    The child is killed if it has not finished after ``limit`` seconds (a hang, not a timing check)."""
    import pty
    import select
    import signal
    import sys
    import time
    pid, master = pty.fork()
    if pid == 0:  # child: becomes ansible-playbook
        os.environ['ANSIBLE_NOCOLOR'] = '1'
        binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
        os.execv(binary, [binary, '-i', 'localhost,', '-c', 'local', playbook] + list(extra_args))
    # Ansible flushes pending input right after showing the prompt, and the terminal echoes what is
    # typed even when it is then flushed: answer once the output is quiet, and answer again while the
    # next task has not started (extra answers after an accepted one are never read).
    output, prompt_seen, sent, last_output = b'', False, None, time.monotonic()
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if prompt_seen and b'TASK [Record the decision]' not in output and now - last_output > 1 \
                    and (sent is None or now - sent > 20):
                os.write(master, answer + b'\r')
                sent = now
            ready, _unused, _unused = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:   # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            last_output = time.monotonic()
            prompt_seen = prompt_seen or b"'yes' to proceed" in output
    finally:
        done, _unused = os.waitpid(pid, os.WNOHANG)
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
    return output.decode('utf-8', 'replace')


@pytest.mark.parametrize('answer,decision', [(b'yes', 'True'), (b'no', 'False')])
def test_decision_prompt_on_a_terminal(tmp_path, answer, decision):
    """Run by hand with cerniq_interactive=true: the operator is asked, and only 'yes' acts."""
    playbook = tmp_path / 'decide.yml'
    playbook.write_text(DECIDE_PLAY % os.path.join(REPO, 'playbooks', 'tasks', 'decide.yml'))
    output = _run_on_terminal(str(playbook), answer, extra_args=['-e', 'cerniq_interactive=true'])
    assert 'Apply the fix?' in output and '- fix the test problem' in output
    assert 'DECISION=%s' % decision in output, output[-2000:]


@pytest.mark.parametrize('extra', [[], ['-e', 'cerniq_interactive=true', '-e', 'awx_job_id=42']])
def test_no_prompt_on_a_terminal_unless_asked(tmp_path, extra):
    """On a terminal without cerniq_interactive, or in an AWX job even with it: no question, report only."""
    playbook = tmp_path / 'decide.yml'
    playbook.write_text(DECIDE_PLAY % os.path.join(REPO, 'playbooks', 'tasks', 'decide.yml'))
    output = _run_on_terminal(str(playbook), b'yes', limit=120, extra_args=extra)
    assert 'Apply the fix?' not in output
    assert 'DECISION=False' in output and 'Report only' in output and 'fix the test problem' in output, output[-2000:]
