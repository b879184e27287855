"""Incident report (runbook 5.2) from a real Prometheus firing a real alert into a real Alertmanager."""

import datetime
import time

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.monitoring import AlertmanagerServer, PrometheusServer

RULES = """
groups:
  - name: incident-test
    rules:
      - alert: CerniqEnrichmentStalled
        expr: vector(1)
        labels: {severity: SEV2, service: enrichment}
        annotations: {summary: Enrichment stalled}
      - alert: CerniqDiskWarning
        expr: vector(1)
        labels: {severity: SEV3, service: database}
        annotations: {summary: Disk filling}
"""


@pytest.fixture(scope='module')
def monitoring():
    with AlertmanagerServer() as alertmanager:
        with PrometheusServer(RULES, alertmanager.url) as prometheus:
            prometheus.wait_for(lambda: len(prometheus.query('ALERTS{alertstate="firing"}')) == 2, 'alerts firing')
            alertmanager.wait_for(lambda: len(alertmanager.alerts()) == 2, 'alerts delivered')
            yield prometheus, alertmanager


@pytest.fixture
def impact_db(pg_conn):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    with pg_conn.cursor() as cur:
        # In the window: 12 unprocessed contacts, 3 processed ones; 4 overdue undecided tasks, 1 decided in time.
        cur.execute("INSERT INTO bronze_contacts (tenant_id, created_at) SELECT gen_random_uuid(), now() - interval "
                    "'10 minutes' FROM generate_series(1, 12)")
        cur.execute("INSERT INTO bronze_contacts (tenant_id, created_at, processed_at, processing_status) SELECT "
                    "gen_random_uuid(), now() - interval '10 minutes', now() - interval '9 minutes', 'promoted' "
                    "FROM generate_series(1, 3)")
        cur.execute("INSERT INTO silver_companies (tenant_id, created_at) SELECT gen_random_uuid(), "
                    "now() - interval '2 hours' FROM generate_series(1, 5)")
        cur.execute("INSERT INTO approval_tasks (approval_type, due_at, created_at) SELECT 'dedup_review', "
                    "now() - interval '5 minutes', now() - interval '3 hours' FROM generate_series(1, 4)")
        cur.execute("INSERT INTO approval_tasks (approval_type, due_at, created_at, decided_at, status) VALUES "
                    "('dedup_review', now() - interval '5 minutes', now() - interval '3 hours', "
                    "now() - interval '20 minutes', 'approved')")
        # Before the window (start = 30 minutes ago): 2 contacts still unprocessed and 2 tasks still overdue
        # count (the incident found them waiting); a contact processed and a task decided before it do not.
        cur.execute("INSERT INTO bronze_contacts (tenant_id, created_at) SELECT gen_random_uuid(), now() - interval "
                    "'2 hours' FROM generate_series(1, 2)")
        cur.execute("INSERT INTO bronze_contacts (tenant_id, created_at, processed_at, processing_status) VALUES "
                    "(gen_random_uuid(), now() - interval '2 hours', now() - interval '1 hour', 'promoted')")
        cur.execute("INSERT INTO approval_tasks (approval_type, due_at, created_at) SELECT 'dedup_review', "
                    "now() - interval '1 hour', now() - interval '5 hours' FROM generate_series(1, 2)")
        cur.execute("INSERT INTO approval_tasks (approval_type, due_at, created_at, decided_at, status) VALUES "
                    "('dedup_review', now() - interval '1 hour', now() - interval '5 hours', "
                    "now() - interval '40 minutes', 'approved')")
    return pg_conn


def test_report_from_live_alerts_and_impact(monitoring, impact_db, pg_db):
    prometheus, alertmanager = monitoring
    start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)).isoformat()
    result = run_module('incident_info', dict(pg_db, prometheus_url=prometheus.url, alertmanager_url=alertmanager.url,
                                              start=start, step='1s', incident_id='INC-42'))
    assert not result.failed, result
    names = {p['alertname'] for p in result['periods']}
    assert names == {'CerniqEnrichmentStalled', 'CerniqDiskWarning'}
    assert all(p['end'] is None for p in result['periods'])  # still firing
    assert {a['alertname'] for a in result['active']} == names
    assert result['severity'] == 'SEV2'
    assert result['impact'] == dict(bronze_contacts_affected=14, silver_companies_delayed=5,
                                    approval_tasks_breached=6)
    md = result['markdown']
    assert md.startswith('# Incident Report: INC-42')
    assert '- **Severity:** SEV2' in md and '- **Status:** Active' in md
    assert 'Alert CerniqEnrichmentStalled (SEV2) fired' in md
    assert '- 14 bronze contacts affected' in md and '- 6 approval tasks breached SLA' in md
    assert md.count('<!-- TODO: fill in -->') >= 5
    assert 'enrichment' in md.split('Affected Services:')[1].splitlines()[0]


def test_matchers_start_from_first_alert_and_bad_input(monitoring, impact_db, pg_db):
    prometheus, alertmanager = monitoring
    result = run_module('incident_info', dict(pg_db, prometheus_url=prometheus.url, alertmanager_url=alertmanager.url,
                                              matchers={'service': 'database'}, step='1s', lookback='1h'))
    assert not result.failed, result
    assert [p['alertname'] for p in result['periods']] == ['CerniqDiskWarning']
    assert result['severity'] == 'SEV3'
    assert result['incident_id'].startswith('INC-')
    bad = run_module('incident_info', dict(pg_db, prometheus_url=prometheus.url, start='yesterday'))
    assert bad.failed and 'ISO 8601' in bad['msg']
    down = run_module('incident_info', dict(pg_db, prometheus_url='http://127.0.0.1:1', start=start_iso()))
    assert down.failed and down['msg'].startswith('cannot read http://127.0.0.1:1/api/v1/query_range')
    assert 'Traceback' not in down['msg']
    for option, value, words in (('lookback', 360, 'is not a duration with a unit'), ('step', '0s', 'between 1s and'),
                                 ('timeout', 10, 'is not a duration with a unit')):
        refused = run_module('incident_info', dict(pg_db, login_port=1, prometheus_url=prometheus.url,
                                                   **{option: value}))
        assert refused.failed and refused['msg'].startswith(option) and words in refused['msg'], refused


def start_iso():
    return (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).isoformat()


def test_incident_report_playbook_writes_markdown(monitoring, impact_db, pg_db, tmp_path):
    from cerniq_testkit.ansible_run import REPO, run_playbook
    prometheus, alertmanager = monitoring
    result = run_playbook(REPO + '/playbooks/incident_report.yml', extra_vars=dict(
        cerniq_postgres=pg_db, cerniq_prometheus_url=prometheus.url, cerniq_alertmanager_url=alertmanager.url,
        cerniq_incident_id='INC-7', cerniq_incident_start=start_iso(), cerniq_report_dir=str(tmp_path),
        cerniq_incident_severity='SEV1', cerniq_incident_services=['imports', 'enrichment'],
        cerniq_incident_mitigated_at=start_iso(), cerniq_incident_mitigated_by='oncall-ana'))
    assert result.returncode == 0, result.stdout
    report = (tmp_path / 'INC-7.md').read_text()
    assert report.startswith('# Incident Report: INC-7') and '14 bronze contacts affected' in report
    # severity and services are playbook options; a fix deployed while the alerts still fire: Mitigated
    assert '- **Severity:** SEV1' in report and '- **Affected Services:** imports, enrichment' in report
    assert '- **Status:** Mitigated' in report and '| Fix deployed | oncall-ana |' in report
    assert '"# Incident Report: INC-7"' in result.stdout
    assert pg_db['login_password'] not in result.stdout


def test_silences_of_the_window_are_in_the_report(monitoring, impact_db, pg_db):
    """A maintenance window (a silence of one of the alerts) shows in the data and in the timeline."""
    prometheus, alertmanager = monitoring
    window = dict(url=alertmanager.url, matchers=['alertname="CerniqDiskWarning"', 'service="database"'],
                  comment='cerniq.ops daily maintenance of db1 (runbook 3.1)', duration='30m')
    created = run_module('alertmanager_silence', window)
    assert not created.failed, created
    try:
        alertmanager.wait_for(lambda: {a['labels']['alertname']: a['status']['state'] for a in alertmanager.alerts()}
                              .get('CerniqDiskWarning') == 'suppressed', 'the alert silenced')
        result = run_module('incident_info', dict(pg_db, prometheus_url=prometheus.url,
                                                  alertmanager_url=alertmanager.url, start=start_iso(), step='1s'))
    finally:
        run_module('alertmanager_silence', dict(window, state='expired'))
    assert not result.failed, result
    [silence] = [s for s in result['silences'] if s['id'] == created['silence']['id']]
    assert silence['matchers'] == ['alertname="CerniqDiskWarning"', 'service="database"']
    assert silence['created_by'] == 'cerniq.ops' and silence['state'] == 'active'
    assert {a['alertname']: a['state'] for a in result['active']}['CerniqDiskWarning'] == 'suppressed'
    assert ('| Silence alertname="CerniqDiskWarning", service="database" (cerniq.ops daily maintenance of db1 '
            '(runbook 3.1)) | cerniq.ops |') in result['markdown']


def test_errored_contacts_count_only_within_the_window(monitoring, impact_db, pg_db):
    """Issue 17 item 10: a contact that failed before the incident is not affected by it."""
    prometheus = monitoring[0]
    start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)).isoformat()
    args = dict(pg_db, prometheus_url=prometheus.url, start=start, step='1s')
    with impact_db.cursor() as cur:
        cur.execute("INSERT INTO bronze_contacts (tenant_id, created_at, processed_at, processing_status) VALUES "
                    "(gen_random_uuid(), now() - interval '2 hours', now() - interval '1 hour', 'error')")
    assert run_module('incident_info', args)['impact']['bronze_contacts_affected'] == 14
    with impact_db.cursor() as cur:
        cur.execute("INSERT INTO bronze_contacts (tenant_id, created_at, processed_at, processing_status) VALUES "
                    "(gen_random_uuid(), now() - interval '10 minutes', now() - interval '9 minutes', 'error')")
    assert run_module('incident_info', args)['impact']['bronze_contacts_affected'] == 15


def _ends(seconds_from_now):
    return datetime.datetime.now(datetime.timezone.utc).timestamp() + seconds_from_now


@pytest.fixture(scope='module')
def clearing_alerts():
    """Alerts that really fire and clear: two HITLTasksOverdue of two tenants (one clears 10 s after the
    other) and an EnrichmentStalled that clears with the first. The rules compare time() with fixed ends."""
    first, second = _ends(40), _ends(50)  # time for both servers to start and fire all three under load
    rules = """
groups:
  - name: clearing
    rules:
      - alert: HITLTasksOverdue
        expr: label_replace(vector(time()) < %(first)f, "tenant_id", "t1", "", "")
        labels: {severity: SEV3, service: hitl}
      - alert: HITLTasksOverdue
        expr: label_replace(vector(time()) < %(second)f, "tenant_id", "t2", "", "")
        labels: {severity: SEV3, service: hitl}
      - alert: EnrichmentStalled
        expr: vector(time()) < %(first)f
        labels: {severity: SEV2, service: enrichment}
""" % dict(first=first, second=second)
    with AlertmanagerServer() as alertmanager:
        with PrometheusServer(rules, alertmanager.url) as prometheus:
            prometheus.wait_for(lambda: len(prometheus.query('ALERTS{alertstate="firing"}')) == 3, 'alerts firing')
            yield prometheus, alertmanager, first, second


def _at(stamp):
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat()


def test_status_and_timeline_follow_what_happened(clearing_alerts, pg_conn, pg_db):
    """Issue 17 item 10: Active while nothing cleared, Mitigated once a fix ran or an alert cleared while
    another fires, Resolved when every alert cleared and stayed clear; repeated alerts told apart by their
    labels; an "Incident resolved" row."""
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    prometheus, alertmanager, first, second = clearing_alerts
    start = _at(first - 120)
    base = dict(pg_db, prometheus_url=prometheus.url, alertmanager_url=alertmanager.url, start=start, step='1s',
                incident_id='INC-9')

    active = run_module('incident_info', dict(base, end=_at(first - 4)))
    assert not active.failed and active['status'] == 'Active', active
    assert '| <!-- TODO: fill in --> | Incident resolved | <!-- TODO: fill in --> |' in active['markdown']
    fixed = run_module('incident_info', dict(base, end=_at(first - 4), mitigated_at=_at(first - 6),
                                             mitigated_by='oncall-ana'))
    assert fixed['status'] == 'Mitigated' and '| Fix deployed | oncall-ana |' in fixed['markdown'], fixed['markdown']

    # At most one left: under load the second may have cleared too by now (10 s later); `partly` reads history.
    prometheus.wait_for(lambda: len(prometheus.query('ALERTS{alertstate="firing"}')) <= 1, 'the first alerts cleared',
                        timeout=90)
    partly = run_module('incident_info', dict(base, end=_at(first + 4)))
    assert partly['status'] == 'Mitigated' and partly['resolved_at'] is None, partly
    assert 'ongoing' in partly['markdown'].split('End Time:')[1].splitlines()[0]

    prometheus.wait_for(lambda: not prometheus.query('ALERTS{alertstate="firing"}'), 'every alert cleared',
                        timeout=90)
    alertmanager.wait_for(lambda: not alertmanager.alerts(), 'the alerts resolved in Alertmanager', timeout=90)
    recent = run_module('incident_info', dict(base, resolved_after='1h'))
    assert recent['status'] == 'Mitigated', recent   # cleared, but not for an hour yet
    time.sleep(3)
    done = run_module('incident_info', dict(base, resolved_after='2s'))
    assert not done.failed and done['status'] == 'Resolved', done
    assert abs(datetime.datetime.fromisoformat(done['resolved_at']).timestamp() - second) <= 3
    md = done['markdown']
    assert '- **Status:** Resolved' in md
    assert '- **End Time:** %s' % datetime.datetime.fromisoformat(done['resolved_at']).strftime('%Y-%m-%d %H:%M UTC') \
        in md
    assert 'Incident resolved (every alert cleared and stayed clear for 2s) | System |' in md
    assert '| <!-- TODO: fill in --> | Incident resolved |' not in md
    for tenant in ('t1', 't2'):
        assert 'Alert HITLTasksOverdue {tenant_id="%s"} (SEV3) fired' % tenant in md
        assert 'Alert HITLTasksOverdue {tenant_id="%s"} cleared' % tenant in md
    assert 'Alert EnrichmentStalled (SEV2) fired' in md   # one of its name: nothing to tell apart
    assert '- **Severity:** SEV2' in md and '- **Affected Services:** enrichment, hitl' in md
    chosen = run_module('incident_info', dict(base, severity='SEV1', services=['imports']))
    assert '- **Severity:** SEV1' in chosen['markdown'] and '- **Affected Services:** imports' in chosen['markdown']
    bad = run_module('incident_info', dict(base, resolved_after='15'))
    assert bad.failed and 'resolved_after' in bad['msg']
