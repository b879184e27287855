"""Maintenance windows against a real Prometheus firing into a real Alertmanager: the daily and weekly
maintenance playbooks, the scheduled maintenance runner and the worker restarts silence the alerts
they may cause - for the host or worker they touch only - and expire the silences when they end,
also when they fail. Without an Alertmanager configured nothing is silenced.

Prometheus fires PostgresSlowQueries for two database hosts, db1 and db2 (constant expressions with
the labels the shipped rules give), into Alertmanager; the jobs run for db1.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from cerniq_testkit.ansible_run import REPO, collections_root, run_playbook
from cerniq_testkit.monitoring import AlertmanagerServer, PrometheusServer

pytestmark = pytest.mark.skipif(shutil.which('prometheus') is None or shutil.which('prometheus-alertmanager') is None,
                                reason='prometheus / prometheus-alertmanager (Debian) not installed')

PLAYBOOKS = os.path.join(REPO, 'playbooks')
RUNNER = os.path.join(REPO, 'roles', 'maintenance', 'files', 'cerniq_maintenance.py')
RULES = """
groups:
  - name: window-test
    rules:
      - alert: PostgresSlowQueries
        expr: label_replace(vector(1), "instance", "db1:9187", "", "")
        labels: {severity: sev3, service: postgres}
      - alert: PostgresSlowQueries
        expr: label_replace(vector(1), "instance", "db2:9187", "", "")
        labels: {severity: sev3, service: postgres}
"""
# Runs inside the window (the weekly playbook's backup check hook, the runner's slow step is SQL):
# waits until db1's alert is silenced, then records what Alertmanager says of both alerts.
PROBE = """
import json, sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2]
deadline = time.time() + 30
while True:
    with urllib.request.urlopen(url + '/api/v2/alerts', timeout=5) as response:
        alerts = json.load(response)
    states = {a['labels']['instance']: a['status']['state'] for a in alerts
              if a['labels']['alertname'] == 'PostgresSlowQueries'}
    if states.get('db1:9187') == 'suppressed' or time.time() > deadline:
        break
    time.sleep(0.3)
with open(out, 'w') as handle:
    json.dump(states, handle)
"""


@pytest.fixture(scope='module')
def monitoring():
    # PrometheusServer resends firing alerts every second (its first notification may be dropped).
    with AlertmanagerServer() as alertmanager, PrometheusServer(RULES, alertmanager.url):
        alertmanager.wait_for(lambda: len(alertmanager.alerts()) == 2, 'both alerts in Alertmanager')
        yield alertmanager


@pytest.fixture
def cerniq_db(pg_conn):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    return pg_conn


def alert_states(alertmanager):
    return {a['labels']['instance']: a['status']['state'] for a in alertmanager.alerts()}


def silences(alertmanager, comment):
    return [s for s in alertmanager.silences() if s['comment'] == comment]


def _window_vars(alertmanager, **extra):
    return dict(cerniq_silence_alertmanager_urls=[alertmanager.url], cerniq_maintenance_silence_host='db1', **extra)


def _window_length(output, silence):
    """Seconds from the silence's start to the end the job output announced when it opened it."""
    import datetime
    import re
    found = re.search(r"silence %s (?:created|replaced) until (\S+):" % silence["id"], output)
    assert found, output
    until = found.group(1)

    def parse(text):
        return datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))
    return (parse(until) - parse(silence['startsAt'])).total_seconds()


def _matcher_texts(silence):
    return sorted('%s%s%s' % (m['name'], '=~' if m['isRegex'] else '=', m['value']) for m in silence['matchers'])


def test_weekly_window_silences_db1_only_while_it_runs(monitoring, pg_db, cerniq_db, tmp_path):
    probe = tmp_path / 'probe.py'
    probe.write_text(PROBE)
    seen = tmp_path / 'seen.json'
    result = run_playbook(os.path.join(PLAYBOOKS, 'weekly_maintenance.yml'), extra_vars=_window_vars(
        monitoring, cerniq_postgres=pg_db,
        cerniq_backup_check_command='%s %s %s %s' % (sys.executable, probe, monitoring.url, seen)))
    assert result.returncode == 0, result.stdout
    # During the window (the backup hook runs inside it): db1 silenced, db2 still paging.
    assert json.loads(seen.read_text()) == {'db1:9187': 'suppressed', 'db2:9187': 'active'}
    comment = 'cerniq.ops weekly maintenance of db1 (runbook 3.2)'
    [silence] = silences(monitoring, comment)
    assert _matcher_texts(silence) == ['alertname=~PostgresSlowQueries|PostgresConnections',
                                       'instance=~db1(:[0-9]+)?']
    assert silence['createdBy'] == 'cerniq.ops' and silence['status']['state'] == 'expired'
    # Bounded: budget 4h + margin 10m from its start; expired at the end.
    assert 4 * 3600 + 600 - 30 < _window_length(result.stdout, silence) <= 4 * 3600 + 600
    assert 'silence %s expired: alertname=~' % silence['id'] in result.stdout
    assert alert_states(monitoring) == {'db1:9187': 'active', 'db2:9187': 'active'}


def test_daily_run_that_fails_still_expires_its_silence(monitoring, pg_db, cerniq_db):
    comment = 'cerniq.ops daily maintenance of db1 (runbook 3.1)'
    result = run_playbook(os.path.join(PLAYBOOKS, 'daily_maintenance.yml'), extra_vars=_window_vars(
        monitoring, cerniq_postgres=pg_db, cerniq_daily_vacuum_tables=['no_such_table']))
    assert result.returncode != 0
    assert 'daily maintenance step(s) failed - vacuum (no_such_table): ' in result.stdout
    assert 'Close the maintenance window (also when a step failed)' in result.stdout
    [silence] = silences(monitoring, comment)
    assert silence['status']['state'] == 'expired'
    opened = [line for line in result.stdout.splitlines() if 'silence %s ' % silence['id'] in line]
    assert len(opened) == 2 and ' until ' in opened[0] and ' expired: ' in opened[1], opened
    # A second run (the failure fixed) opens a new window and closes it: never two live silences.
    again = run_playbook(os.path.join(PLAYBOOKS, 'daily_maintenance.yml'), extra_vars=_window_vars(
        monitoring, cerniq_postgres=pg_db))
    assert again.returncode == 0, again.stdout
    assert [s['status']['state'] for s in silences(monitoring, comment)] == ['expired', 'expired']


def test_check_mode_and_no_alertmanager_silence_nothing(monitoring, pg_db, cerniq_db):
    before = monitoring.silences()
    check = run_playbook(os.path.join(PLAYBOOKS, 'daily_maintenance.yml'), check=True, extra_vars=_window_vars(
        monitoring, cerniq_postgres=pg_db))
    assert check.returncode == 0, check.stdout
    assert 'silence (check mode) created until' in check.stdout
    plain = run_playbook(os.path.join(PLAYBOOKS, 'daily_maintenance.yml'), extra_vars=dict(cerniq_postgres=pg_db))
    assert plain.returncode == 0, plain.stdout
    assert ' until ' not in plain.stdout and 'Open the maintenance window' in plain.stdout
    assert monitoring.silences() == before


def test_unreachable_alertmanager_does_not_stop_the_maintenance(pg_db, cerniq_db):
    result = run_playbook(os.path.join(PLAYBOOKS, 'daily_maintenance.yml'), extra_vars=dict(
        cerniq_postgres=pg_db, cerniq_silence_alertmanager_urls=['http://127.0.0.1:1']))
    assert result.returncode == 0, result.stdout
    assert 'NOT silenced, Alertmanager failed: no Alertmanager answers: http://127.0.0.1:1' in result.stdout


# The runner's slow step waits for a lock the test holds: the window stays open until the test has
# looked, however slow the machine (a fixed pg_sleep could end before a loaded test polled).
SLOW_STEP_LOCK = 727001
SLOW_STEP = 'SELECT count(*) FROM (SELECT pg_advisory_xact_lock_shared(%d)) AS waited' % SLOW_STEP_LOCK


def hold_slow_step(conn):
    with conn.cursor() as cur:
        cur.execute('SELECT pg_advisory_lock(%s)', (SLOW_STEP_LOCK,))


def release_slow_step(conn):
    with conn.cursor() as cur:
        cur.execute('SELECT pg_advisory_unlock(%s)', (SLOW_STEP_LOCK,))


def _runner_config(tmp_path, pg_db, alertmanager_url, steps):
    config = dict(
        job='daily', log_file=str(tmp_path / 'maintenance-daily.log'), lock_file=str(tmp_path / 'job.lock'),
        textfile_dir=str(tmp_path), credentials_file=str(tmp_path / 'credentials'), timeout=600,
        postgres={k: v for k, v in pg_db.items() if k != 'login_password'}, redis={}, steps=steps,
        silence=dict(urls=[alertmanager_url], created_by='cerniq.ops', margin='10m',
                     comment='cerniq.ops scheduled daily maintenance of db1 (runbook 3.1)',
                     matchers=[dict(name='alertname', value='PostgresSlowQueries|PostgresConnections', is_regex=True),
                               dict(name='instance', value='db1(:[0-9]+)?', is_regex=True)]))
    (tmp_path / 'credentials').write_text('PGPASSWORD=%s\n' % pg_db['login_password'])
    (tmp_path / 'credentials').chmod(0o600)
    path = tmp_path / 'daily.json'
    path.write_text(json.dumps(config))
    return path


def test_runner_failed_run_silences_during_and_expires_after(monitoring, pg_db, cerniq_db, tmp_path):
    comment = 'cerniq.ops scheduled daily maintenance of db1 (runbook 3.1)'
    steps = [{'name': 'slow_check', 'type': 'health',
              'options': {'sections': ['orphans'], 'orphan_checks': [{'name': 'slow', 'query': SLOW_STEP}]}},
             {'name': 'broken', 'type': 'archive', 'options': {'source_table': 'no_such_table', 'older_than': '1 day'}}]
    config = _runner_config(tmp_path, pg_db, monitoring.url, steps)
    hold_slow_step(cerniq_db)
    run = subprocess.Popen([sys.executable, RUNNER, '--config', str(config), '--lib', collections_root()],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        during = monitoring.wait_for(lambda: alert_states(monitoring)['db1:9187'] == 'suppressed'
                                     and alert_states(monitoring), 'db1 silenced while the runner runs', timeout=60)
        live = [s for s in silences(monitoring, comment) if s['status']['state'] == 'active']
        release_slow_step(cerniq_db)
        output = run.communicate(timeout=120)[0]
    finally:
        if run.poll() is None:
            run.kill()
    assert during == {'db1:9187': 'suppressed', 'db2:9187': 'active'}
    assert len(live) == 1
    assert run.returncode == 1, output
    assert 'step broken: FAILED' in output
    assert 'maintenance window: silence %s created' % live[0]['id'] in output
    assert 'maintenance window closed: silence %s expired' % live[0]['id'] in output
    assert [s['status']['state'] for s in silences(monitoring, comment) if s['id'] == live[0]['id']] == ['expired']
    assert alert_states(monitoring)['db1:9187'] == 'active'


def test_runner_terminated_still_expires_its_silence(monitoring, pg_db, cerniq_db, tmp_path):
    comment = 'cerniq.ops scheduled daily maintenance of db1 (runbook 3.1)'
    steps = [{'name': 'slow_check', 'type': 'health',
              'options': {'sections': ['orphans'], 'orphan_checks': [{'name': 'slow', 'query': SLOW_STEP}]}}]
    config = _runner_config(tmp_path, pg_db, monitoring.url, steps)
    before = {s['id'] for s in silences(monitoring, comment)}
    hold_slow_step(cerniq_db)
    run = subprocess.Popen([sys.executable, RUNNER, '--config', str(config), '--lib', collections_root()],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    monitoring.wait_for(lambda: [s for s in silences(monitoring, comment) if s['status']['state'] == 'active'],
                        'window open', timeout=60)
    run.terminate()  # what timeout(1) and systemd send first
    release_slow_step(cerniq_db)  # the signal is handled when the step's statement returns
    output = run.communicate(timeout=60)[0]
    assert run.returncode == 128 + 15, output
    new = [s for s in silences(monitoring, comment) if s['id'] not in before]
    assert [s['status']['state'] for s in new] == ['expired'], output
    assert 'maintenance window closed' in output


def test_runner_dry_run_and_unreachable_alertmanager(monitoring, pg_db, cerniq_db, tmp_path):
    steps = [{'name': 'analyze', 'type': 'maintenance', 'options': {'tasks': [{'action': 'analyze',
                                                                               'table': 'bronze_contacts'}]}}]
    before = monitoring.silences()
    dry = subprocess.run([sys.executable, RUNNER, '--config', str(_runner_config(tmp_path, pg_db, monitoring.url, steps)),
                          '--lib', collections_root(), '--dry-run'], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert dry.returncode == 0, dry.stdout
    assert 'maintenance window: would silence alertname=~"PostgresSlowQueries|PostgresConnections", ' \
        'instance=~"db1(:[0-9]+)?" for 1200 s' in dry.stdout
    assert monitoring.silences() == before
    down = subprocess.run([sys.executable, RUNNER, '--config',
                           str(_runner_config(tmp_path, pg_db, 'http://127.0.0.1:1', steps)),
                           '--lib', collections_root()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120, check=False)
    assert down.returncode == 0, down.stdout
    assert 'maintenance window NOT opened, the alerts of this run may page: no Alertmanager answers' in down.stdout
    assert 'step analyze: ok' in down.stdout


def test_restart_window_covers_the_worker_and_its_queue_and_is_closed_on_failure(monitoring, tmp_path, redis_server,
                                                                                 redis_params):
    if shutil.which('podman') is None:
        pytest.skip('podman not installed')
    env = dict(os.environ, CONTAINERS_CONF=os.path.join(REPO, 'extensions', 'molecule', 'containers.conf'))
    image = subprocess.run([os.path.join(REPO, 'scripts', 'build-image.sh')], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, check=True).stdout.strip().splitlines()[-1]
    name = 'cerniq-test-window-%d' % os.getpid()
    subprocess.run(['podman', 'run', '-d', '--name', name, image, 'sleep', 'infinity'], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    try:
        from cerniq_testkit.bullmq_helpers import PY_CURRENT, run
        queue = 'silver:enrich:anaf-fiscal-status'
        run(PY_CURRENT, 'produce', redis_server.port, queue, '--count', 5)
        worker = dict(name=name, kind='podman', queue=queue, instance='worker1:9465')
        play = tmp_path / 'restart.yml'
        play.write_text(json.dumps([{
            'name': 'Restart a worker', 'hosts': 'localhost', 'gather_facts': False,
            'roles': [{'role': 'cerniq.ops.cerniq'}],
            'module_defaults': {'group/cerniq.ops.redis': redis_params},
            'vars': {'cerniq_restart_workers': [worker], 'cerniq_restart_progress_retries': 2,
                     'cerniq_restart_progress_delay': 1, 'cerniq_silence_alertmanager_urls': [monitoring.url]},
            'tasks': [{'name': 'Restart', 'ansible.builtin.include_tasks': REPO + '/playbooks/tasks/restart_workers.yml'}],
        }]))
        result = run_playbook(str(play), env={'CONTAINERS_CONF': env['CONTAINERS_CONF']})
    finally:
        subprocess.run(['podman', 'rm', '-f', '-t', '0', name], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    # Nobody consumes the queue: the progress wait fails, the window is closed anyway.
    assert result.returncode != 0
    assert 'Wait for progress' in result.stdout and 'Close the restart window' in result.stdout
    worker_silence = silences(monitoring, 'cerniq.ops restart of %s' % name)
    queue_silence = silences(monitoring, 'cerniq.ops restart of %s, queue %s' % (name, queue))
    assert [_matcher_texts(s) for s in worker_silence] == [['alertname=~WorkerDown', 'instance=worker1:9465']]
    assert [_matcher_texts(s) for s in queue_silence] == [['alertname=~BullMQQueueLatency', 'queue=' + queue]]
    assert [s['status']['state'] for s in worker_silence + queue_silence] == ['expired', 'expired']
    # Bounded by the progress wait (2 x 1 s) plus the 10 minute margin.
    for silence in worker_silence + queue_silence:
        assert 602 - 30 < _window_length(result.stdout, silence) <= 602
