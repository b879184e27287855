"""Prometheus alert rules: validity, unit tests and test coverage.

* every shipped rule file passes ``promtool check rules --lint-fatal`` (the same
  command the prometheus role uses as ``validate:``);
* every ``tests/rules/*.test.yml`` passes ``promtool test rules``;
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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULE_DIR = os.path.join(REPO, 'roles', 'prometheus', 'files', 'rules')
TEST_DIR = os.path.join(REPO, 'tests', 'rules')
RULE_FILES = sorted(glob.glob(os.path.join(RULE_DIR, 'cerniq-*.yml')))
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


@needs_promtool
@pytest.mark.parametrize('path', RULE_FILES, ids=_ids(RULE_FILES))
def test_promtool_check_rules_lint_fatal(path):
    proc = subprocess.run(['promtool', 'check', 'rules', '--lint-fatal', path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


@needs_promtool
@pytest.mark.parametrize('path', TEST_FILES, ids=_ids(TEST_FILES))
def test_promtool_test_rules(path):
    proc = subprocess.run(['promtool', 'test', 'rules', os.path.basename(path)], cwd=TEST_DIR,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_every_rule_file_is_covered_by_a_test_file():
    referenced = set()
    for path in TEST_FILES:
        with open(path) as handle:
            doc = yaml.safe_load(handle)
        for rel in doc['rule_files']:
            target = os.path.normpath(os.path.join(TEST_DIR, rel))
            assert os.path.exists(target), '%s: missing rule file %s' % (path, rel)
            referenced.add(target)
    assert set(map(os.path.normpath, RULE_FILES)) <= referenced


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
