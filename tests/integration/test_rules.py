"""Prometheus alert rules: validity, unit tests and test coverage.

The rules are templates (roles/prometheus/templates/rules/*.j2) rendered from the cerniq settings;
these tests read them rendered by the role itself (cerniq_testkit/rendered.py), at the defaults and at
changed settings:

* ``promtool check rules --lint-fatal`` and ``promtool test rules`` on the rules rendered with
  the defaults are the ``rules`` layer of ``make test`` (scripts/run-tests.sh), not repeated here;
  here a threshold, a ``for:`` and an escalation delay changed in the settings change when the
  alerts fire (promtool, on the rules rendered with them);
* every alert rule (alertname x severity x escalation) is tested both firing and
  not firing, carries severity/service/summary/description/runbook_url, and the
  SEV1/SEV2 escalation siblings follow runbook 5.3.
"""

import glob
import os
import re
import shutil
import subprocess

import pytest
import yaml

from cerniq_testkit.ansible_run import REPO
from cerniq_testkit.rendered import default_rule_files, default_rules_dir, render_rules

TEST_DIR = os.path.join(REPO, 'tests', 'rules')
RULE_FILES = default_rule_files()
TEST_FILES = sorted(glob.glob(os.path.join(TEST_DIR, '*.test.yml')))
RUNBOOK_BASE = 'https://runbooks.cerniq.app/etapa1#'
SEVERITIES = ('sev1', 'sev2', 'sev3', 'sev4')
# Runbook 5.3: time after the first (oncall) notification at which each level is added.
LADDERS = {
    'sev1': {'oncall': 0, 'lead': 15 * 60, 'manager': 30 * 60, 'exec': 60 * 60},
    'sev2': {'oncall': 0, 'lead': 60 * 60, 'manager': 4 * 60 * 60},
}

needs_promtool = pytest.mark.skipif(shutil.which('promtool') is None, reason='promtool (Debian prometheus) not installed')


def _ids(paths):
    return [os.path.basename(p) for p in paths]


def _duration(text):
    """Seconds of a Prometheus duration such as ``1h5m`` (0 for None)."""
    if not text:
        return 0
    units = {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800, 'y': 31536000}
    parts = re.findall(r'(\d+)(ms|s|m|h|d|w|y)', str(text))
    assert ''.join(n + u for n, u in parts) == str(text), 'bad duration %r' % text
    return sum(int(n) * units[u] for n, u in parts)


def _alert_rules():
    """(file, group, rule) for every alerting rule of every shipped rule file."""
    found = []
    for path in RULE_FILES:
        with open(path) as handle:
            doc = yaml.safe_load(handle)
        for group in doc['groups']:
            for rule in group['rules']:
                if 'alert' in rule:
                    found.append((os.path.basename(path), group['name'], rule))
    return found


def _variant(labels):
    return (labels.get('severity'), labels.get('escalation'))


def _alert_tests():
    """alertname -> list of exp_alerts lists, over all test files."""
    cases = {}
    for path in TEST_FILES:
        with open(path) as handle:
            doc = yaml.safe_load(handle)
        for test in doc.get('tests', []):
            for case in test.get('alert_rule_test', []) or []:
                cases.setdefault(case['alertname'], []).append(case.get('exp_alerts') or [])
    return cases


def test_rule_and_test_files_exist():
    assert len(RULE_FILES) >= 5
    assert len(TEST_FILES) >= len(RULE_FILES)


def _promtool_test(directory, test_file):
    """promtool test rules on ``test_file`` run from ``directory`` (which holds ``rendered/``)."""
    return subprocess.run(['promtool', 'test', 'rules', test_file], cwd=directory,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)


def test_every_rule_file_is_covered_by_a_test_file():
    referenced = set()
    for path in TEST_FILES:
        with open(path) as handle:
            doc = yaml.safe_load(handle)
        for rel in doc['rule_files']:
            assert rel.startswith('rendered/'), '%s: %s is not a rendered rule file' % (path, rel)
            target = os.path.join(default_rules_dir(), os.path.basename(rel))
            assert os.path.exists(target), '%s: missing rule file %s' % (path, rel)
            referenced.add(target)
    assert set(RULE_FILES) <= referenced


def test_every_alert_is_tested_firing_and_not_firing():
    cases = _alert_tests()
    missing = []
    for filename, _group, rule in _alert_rules():
        name, variant = rule['alert'], _variant(rule.get('labels', {}))
        runs = cases.get(name, [])
        fired = any(_variant(alert.get('exp_labels', {})) == variant for exp in runs for alert in exp)
        quiet = any(not exp for exp in runs)
        if not fired:
            missing.append('%s: %s %s never tested firing' % (filename, name, variant))
        if not quiet:
            missing.append('%s: %s never tested with empty exp_alerts' % (filename, name))
    assert not missing, '\n'.join(missing)


def test_tests_only_name_existing_alerts():
    names = {rule['alert'] for _f, _g, rule in _alert_rules()}
    assert set(_alert_tests()) <= names


@pytest.mark.parametrize('filename,group,rule', _alert_rules(),
                         ids=['%s-%s-%s' % (r['alert'], r['labels'].get('severity'), r['labels'].get('escalation', ''))
                              for _f, _g, r in _alert_rules()])
def test_alert_labels_and_annotations(filename, group, rule):
    labels, annotations = rule.get('labels', {}), rule.get('annotations', {})
    assert labels.get('severity') in SEVERITIES
    assert labels.get('service'), 'service label drives inhibition'
    for key in ('summary', 'description', 'runbook_url'):
        assert annotations.get(key), '%s lacks %s' % (rule['alert'], key)
    assert annotations['runbook_url'].startswith(RUNBOOK_BASE)
    if labels['severity'] in LADDERS:
        assert labels.get('escalation') in LADDERS[labels['severity']]
    else:
        assert 'escalation' not in labels, 'only SEV1/SEV2 escalate'


def test_escalation_siblings_follow_runbook_5_3():
    siblings = {}
    for _f, _g, rule in _alert_rules():
        severity = rule['labels']['severity']
        if severity in LADDERS:
            siblings.setdefault((rule['alert'], severity), []).append(rule)
    assert siblings
    for (name, severity), rules in siblings.items():
        by_level = {r['labels']['escalation']: r for r in rules}
        assert sorted(by_level) == sorted(LADDERS[severity]), name
        assert len(rules) == len(by_level), '%s: duplicate escalation level' % name
        base = _duration(by_level['oncall'].get('for'))
        for level, offset in LADDERS[severity].items():
            rule = by_level[level]
            assert ' '.join(rule['expr'].split()) == ' '.join(by_level['oncall']['expr'].split()), (name, level)
            assert _duration(rule.get('for')) == base + offset, (name, level)
            assert rule['annotations'] == by_level['oncall']['annotations'], (name, level)


@pytest.mark.parametrize('path', RULE_FILES, ids=_ids(RULE_FILES))
def test_no_yaml_alias_as_expr(path):
    """Prometheus 2.42 reads ``expr: *e`` as the expression ``e`` (the anchor name): a rule that never fires."""
    with open(path) as handle:
        text = handle.read()
    assert not re.search(r'^\s*expr:\s*[*&]', text, re.M)


# A site's tuning, set only in the settings: queue depth levels, the warning's `for:` and the SEV2
# escalation delays. The same input series must then fire what it did not fire at the defaults.
TUNED = {
    'cerniq_scaling_thresholds': {
        'queue_depth': {'warning': 200, 'critical': 400}, 'processing_latency': {'warning': '5m', 'critical': '15m'},
        'db_connections': {'warning': 60, 'critical': 80}, 'memory': {'warning': 70, 'critical': 85},
        'disk': {'warning': 70, 'critical': 85}},
    'cerniq_alert_bullmq_queue_depth': {'warning_for': '3m', 'critical_for': '2m'},
    'cerniq_escalation_after': {'sev1': {'lead': '15m', 'manager': '30m', 'exec': '1h'},
                                'sev2': {'lead': '30m', 'manager': '2h'}},
}


def _depth_alert(severity, escalation=None):
    """An expected BullMQQueueDepth alert on queue q (500 waiting jobs) with the tuned texts."""
    labels = dict(alertname='BullMQQueueDepth', queue='q', service='queue', severity=severity)
    url = 'https://runbooks.cerniq.app/etapa1#6-2-scaling-thresholds'
    if escalation:
        labels['escalation'] = escalation
        annotations = dict(summary='BullMQ queue q has more than 400 waiting jobs', runbook_url=url, description=(
            'Queue q has 500 jobs waiting (wait + prioritized + paused). Scale action (runbook 6.2): add workers; '
            'check for a stall (runbook 2.1).'))
    else:
        annotations = dict(summary='BullMQ queue q has more than 200 waiting jobs', runbook_url=url, description=(
            'Queue q has 500 jobs waiting (wait + prioritized + paused) for 3 minutes. Scale action (runbook 6.2): '
            'add workers.'))
    return dict(exp_labels=labels, exp_annotations=annotations)


def _depth_case(eval_time, alerts):
    return dict(eval_time=eval_time, alertname='BullMQQueueDepth', exp_alerts=alerts)


@needs_promtool
def test_changed_settings_change_when_the_alerts_fire(tmp_path):
    rendered = render_rules(tmp_path / 'rendered', extra_vars=TUNED)
    queues = yaml.safe_load(open(rendered[RULE_FILES.index(os.path.join(default_rules_dir(), 'cerniq-queues.yml'))]))
    depth = [r for g in queues['groups'] for r in g['rules'] if r.get('alert') == 'BullMQQueueDepth']
    assert {(r['labels'].get('escalation'), r['expr'], r['for']) for r in depth} == {
        (None, 'queue:bullmq_jobs_waiting:sum > 200', '3m'),
        ('oncall', 'queue:bullmq_jobs_waiting:sum > 400', '2m'),
        ('lead', 'queue:bullmq_jobs_waiting:sum > 400', '32m'),
        ('manager', 'queue:bullmq_jobs_waiting:sum > 400', '2h2m')}
    assert 'more than 200 waiting jobs' in yaml.safe_dump(depth)

    # 500 jobs wait in queue q for 3 hours: nothing at the defaults (1000 / 5000), every level when tuned.
    warning, critical = _depth_alert('sev3'), _depth_alert('sev2', 'oncall')
    lead, manager = _depth_alert('sev2', 'lead'), _depth_alert('sev2', 'manager')
    series = [dict(series='bullmq_queue_jobs{job="redis",instance="r:9121",queue="q",state="wait"}', values='500x180')]
    tuned_cases = [_depth_case('1m', []), _depth_case('4m', [critical, warning]),
                   _depth_case('31m', [critical, warning]), _depth_case('33m', [lead, critical, warning]),
                   _depth_case('2h3m', [lead, manager, critical, warning])]
    default_cases = [_depth_case(t, []) for t in ('4m', '33m', '2h3m')]
    for name, cases, directory in (('tuned', tuned_cases, tmp_path),
                                   ('defaults', default_cases, os.path.dirname(default_rules_dir()))):
        test_file = os.path.join(str(directory), 'settings-%s.test.yml' % name)
        with open(test_file, 'w') as handle:
            yaml.safe_dump(dict(rule_files=['rendered/cerniq-queues.yml'], evaluation_interval='1m', tests=[
                dict(interval='1m', input_series=series, alert_rule_test=cases)]), handle)
        proc = _promtool_test(str(directory), os.path.basename(test_file))
        assert proc.returncode == 0, '%s:\n%s' % (name, proc.stdout)
