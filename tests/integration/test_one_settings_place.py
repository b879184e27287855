"""One place for a site's settings: a queue added and thresholds changed in ONE inventory file reach
every part that uses them, rendered or run by Ansible itself for that inventory:

* the exporters' configuration - redis_exporter's ``-check-single-keys`` gets the new queue's keys,
  sql_exporter's stuck-import query the new stuck time (the roles' own templates, with the roles'
  defaults, through a playbook);
* the alert rules (rendered by the prometheus role) - promtool shows BullMQQueueDepth firing for the
  new queue at the new level, which the defaults do not;
* the dashboards (rendered by the dashboards role) - the queue variable lists the new queue, the
  queue-depth panel draws the new level;
* the diagnosis (diagnose_queues.yml against a throwaway Redis holding real BullMQ jobs) - the new
  queue is read and judged BACKLOG at the new level;
* the capacity report (capacity_report.yml) - the new queue's depth is judged against the new level.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from cerniq_testkit.ansible_run import REPO, run_playbook
from cerniq_testkit.bullmq_helpers import PY_CURRENT, run
from cerniq_testkit.rendered import render

NEW_QUEUE = 'gold:export:crm'
WAITING = 300  # above the site's new warning level (200), below the runbook's (1000)
SITE = {
    # The site's one change set: a queue added, the queue depth warning lowered, a longer stuck time.
    'cerniq_queues': ['bronze:ingest:csv', 'bronze:ingest:xlsx', 'silver:enrich:anaf-fiscal-status',
                      'silver:enrich:termene', 'silver:score:quality', NEW_QUEUE],
    'cerniq_scaling_thresholds': {
        'queue_depth': {'warning': 200, 'critical': 5000}, 'processing_latency': {'warning': '5m', 'critical': '15m'},
        'db_connections': {'warning': 60, 'critical': 80}, 'memory': {'warning': 70, 'critical': 85},
        'disk': {'warning': 70, 'critical': 85}},
    'cerniq_stuck_after_minutes': 45,
}

# The exporters' configuration templates, rendered by Ansible with the roles' defaults and the
# inventory (the roles' own tasks are skipped: only this play's tagged task runs).
EXPORTER_PLAY = """
- name: Render the exporters' configuration for this inventory
  hosts: localhost
  gather_facts: true
  gather_subset: [min]
  vars:
    sql_exporter_db_password: required-by-the-role-unused-here
  roles:
    - role: cerniq.ops.redis_exporter
    - role: cerniq.ops.sql_exporter
  tasks:
    - name: Render the templates
      ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.template', item.src) }}"
        dest: "%(dest)s/{{ item.dest }}"
        mode: "0600"
      loop:
        - {src: "%(repo)s/roles/redis_exporter/templates/environment.j2", dest: redis_exporter.env}
        - {src: "%(repo)s/roles/sql_exporter/templates/prometheus-sql-exporter.yml.j2", dest: sql_exporter.yml}
      tags: [cerniq_test_render]
"""


@pytest.fixture
def site(tmp_path, pg_db, pg_conn, redis_params, redis_server):
    """The ONE inventory file of the site, with a throwaway PostgreSQL (CERNIQ schema) and Redis."""
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(yaml.safe_dump({'all': {
        'hosts': {'localhost': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}},
        'vars': dict(SITE, cerniq_postgres=pg_db, cerniq_redis=redis_params, cerniq_prometheus_url='',
                     cerniq_report_dir=str(tmp_path / 'reports'))}}))
    run(PY_CURRENT, 'produce', redis_server.port, NEW_QUEUE, '--count', WAITING)
    return str(inventory)


def test_exporter_configuration_follows_the_inventory(site, tmp_path):
    out = tmp_path / 'exporters'
    out.mkdir()
    play = tmp_path / 'exporters.yml'
    play.write_text(EXPORTER_PLAY % dict(dest=out, repo=REPO))
    result = run_playbook(str(play), inventory=site, extra_args=['--tags', 'cerniq_test_render'])
    assert result.returncode == 0, result.stdout
    args = (out / 'redis_exporter.env').read_text()
    keys = args.split('-check-single-keys=')[1].split()[0].split(',')
    assert 'bull:%s:wait' % NEW_QUEUE in keys and 'bull:%s:prioritized' % NEW_QUEUE in keys
    assert len(keys) == len(SITE['cerniq_queues']) * 8
    queries = yaml.safe_load((out / 'sql_exporter.yml').read_text())
    stuck = [q for job in queries['jobs'] for q in job['queries'] if q['name'] == 'cerniq_import_batches_stuck']
    assert len(stuck) == 1 and stuck[0]['query'].count("45 * interval '1 minute'") == 3, stuck
    assert "30 * interval" not in stuck[0]['query']


@pytest.mark.skipif(shutil.which('promtool') is None, reason='promtool (Debian prometheus) not installed')
def test_rules_and_dashboards_follow_the_inventory(site, tmp_path):
    render(rules_dir=tmp_path / 'rendered', dashboards_dir=tmp_path / 'dashboards', inventory=site)
    queues = yaml.safe_load((tmp_path / 'rendered' / 'cerniq-queues.yml').read_text())
    depth = {(r['labels']['severity'], r['labels'].get('escalation')): r['expr']
             for g in queues['groups'] for r in g['rules'] if r.get('alert') == 'BullMQQueueDepth'}
    assert depth[('sev3', None)] == 'queue:bullmq_jobs_waiting:sum > 200'
    stuck = [r for g in queues['groups'] for r in g['rules'] if r.get('alert') == 'ImportStuck'][0]
    assert 'more than 45 minutes' in ' '.join(stuck['annotations']['description'].split())
    # promtool: the new queue with 300 waiting jobs fires the warning after its 10 minutes.
    series = 'bullmq_queue_jobs{job="redis",instance="redis1:9121",queue="%s",state="wait"}' % NEW_QUEUE
    summary = 'BullMQ queue %s has more than 200 waiting jobs' % NEW_QUEUE
    description = ('Queue %s has 300 jobs waiting (wait + prioritized + paused) for 10 minutes. Scale action '
                   '(runbook 6.2): add workers.' % NEW_QUEUE)
    (tmp_path / 'site.test.yml').write_text(yaml.safe_dump(dict(
        rule_files=['rendered/cerniq-queues.yml'], evaluation_interval='1m', tests=[dict(
            interval='1m', input_series=[dict(series=series, values='%dx30' % WAITING)],
            alert_rule_test=[
                dict(eval_time='5m', alertname='BullMQQueueDepth', exp_alerts=[]),
                dict(eval_time='15m', alertname='BullMQQueueDepth', exp_alerts=[dict(
                    exp_labels=dict(queue=NEW_QUEUE, service='queue', severity='sev3'),
                    exp_annotations=dict(summary=summary, description=description,
                                         runbook_url='https://runbooks.cerniq.app/etapa1#6-2-scaling-thresholds'))])])])))
    proc = subprocess.run(['promtool', 'test', 'rules', 'site.test.yml'], cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout

    grafana = json.loads((tmp_path / 'dashboards' / 'etapa1-overview.grafana.json').read_text())
    variable = next(v for v in grafana['templating']['list'] if v['name'] == 'queue')
    assert variable['query'].split(',') == SITE['cerniq_queues']
    panel = next(p for p in grafana['panels'] if p['title'] == 'Queue Depth by Queue')
    assert [s['value'] for s in panel['fieldConfig']['defaults']['thresholds']['steps']] == [None, 200, 5000]
    assert panel['targets'][0]['expr'] == 'queue:bullmq_jobs_waiting:sum{queue=~"$queue"}'
    signoz = json.loads((tmp_path / 'dashboards' / 'etapa1-overview.signoz.json').read_text())
    variable = next(v for v in signoz['variables'].values() if v['name'] == 'queue')
    assert variable['customValue'].split(',') == SITE['cerniq_queues']
    widget = next(w for w in signoz['widgets'] if w['title'] == 'Queue Depth by Queue')
    assert [t['thresholdValue'] for t in widget['thresholds']] == [200, 5000]


def test_diagnosis_and_capacity_report_follow_the_inventory(site, tmp_path):
    diagnosis = run_playbook(os.path.join(REPO, 'playbooks', 'diagnose_queues.yml'), inventory=site)
    assert diagnosis.returncode == 0, diagnosis.stdout
    assert '%s: BACKLOG - %d waiting' % (NEW_QUEUE, WAITING) in diagnosis.stdout, diagnosis.stdout

    report = run_playbook(os.path.join(REPO, 'playbooks', 'capacity_report.yml'), inventory=site)
    assert report.returncode == 0, report.stdout
    markdown = (tmp_path / 'reports' / 'capacity.md').read_text()
    assert '| Queue depth (waiting) | %s | %d | > 200 | > 5000 | WARNING | Add workers |' % (NEW_QUEUE, WAITING) \
        in markdown, markdown
