"""The alertmanager role's configuration, rendered by the role itself, routed by amtool.

The role runs for real on localhost with ``--tags alertmanager_configure`` into a private
directory: its template task (``validate: amtool check-config %s``) renders the
defaults or given variables. Then ``amtool config routes test`` proves, for every
severity x escalation label set, which receiver gets the alert — the contract
between the rule files' labels and runbook 5.1 / 5.3.
"""

import grp
import os
import pwd
import re
import shutil
import subprocess

import pytest
import yaml

from cerniq_testkit.ansible_run import run_playbook
from cerniq_testkit.rendered import default_rules_dir

pytestmark = pytest.mark.skipif(shutil.which('amtool') is None, reason='amtool (prometheus-alertmanager) not installed')

DEFAULT_ROUTES = [
    # (labels, expected receiver)
    ({'severity': 'sev1'}, 'oncall-pager'),
    ({'severity': 'sev1', 'escalation': 'oncall'}, 'oncall-pager'),
    ({'severity': 'sev1', 'escalation': 'lead'}, 'team-lead'),
    ({'severity': 'sev1', 'escalation': 'manager'}, 'engineering-manager'),
    ({'severity': 'sev1', 'escalation': 'exec'}, 'executive'),
    ({'severity': 'sev2'}, 'oncall-pager'),
    ({'severity': 'sev2', 'escalation': 'oncall'}, 'oncall-pager'),
    ({'severity': 'sev2', 'escalation': 'lead'}, 'team-lead'),
    ({'severity': 'sev2', 'escalation': 'manager'}, 'engineering-manager'),
    ({'severity': 'sev3'}, 'team-chat'),
    # escalation only applies to SEV1/SEV2 (runbook 5.3)
    ({'severity': 'sev3', 'escalation': 'lead'}, 'team-chat'),
    ({'severity': 'sev4'}, 'tickets'),
    ({'severity': 'sev4', 'escalation': 'exec'}, 'tickets'),
    ({'alertname': 'Unlabelled'}, 'team-chat'),
    ({'severity': 'critical'}, 'team-chat'),
]


def _render(tmp_path, extra_vars=None):
    """Apply the role's configure phase into tmp_path; returns (result, config path)."""
    config = tmp_path / 'alertmanager.yml'
    role_vars = {
        'alertmanager_config_file': str(config),
        'alertmanager_config_owner': pwd.getpwuid(os.getuid()).pw_name,
        'alertmanager_config_group': grp.getgrgid(os.getgid()).gr_name,
        'alertmanager_manage_args': False,
        'alertmanager_service_state': 'stopped',
        'alertmanager_amtool_path': shutil.which('amtool'),
    }
    role_vars.update(extra_vars or {})
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Render the Alertmanager configuration',
        'hosts': 'localhost',
        'gather_facts': False,
        'roles': [{'role': 'cerniq.ops.alertmanager', 'vars': role_vars}],
    }]))
    return run_playbook(str(playbook), extra_args=['--tags', 'alertmanager_configure']), config


def _route(config, labels):
    cmd = ['amtool', 'config', 'routes', 'test', '--config.file=%s' % config]
    cmd += ['%s=%s' % item for item in sorted(labels.items())]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope='module')
def default_config(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('alertmanager')
    result, config = _render(tmp_path)
    assert result.returncode == 0, result.stdout
    return config


def test_default_config_passes_amtool_check_config(default_config):
    proc = subprocess.run(['amtool', 'check-config', str(default_config)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize('labels,receiver', DEFAULT_ROUTES,
                         ids=['-'.join('%s=%s' % kv for kv in sorted(lbl.items())) for lbl, _r in DEFAULT_ROUTES])
def test_default_routes(default_config, labels, receiver):
    cmd = ['amtool', 'config', 'routes', 'test', '--config.file=%s' % default_config,
           '--verify.receivers=%s' % receiver]
    cmd += ['%s=%s' % item for item in sorted(labels.items())]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_response_times_follow_runbook_5_1(default_config):
    config = yaml.safe_load(default_config.read_text())
    by_severity = {}
    for route in config['route']['routes']:
        for matcher in route.get('matchers', []):
            if matcher.startswith('severity='):
                by_severity[matcher.split('=', 1)[1].strip('"')] = route
    assert {s: r['repeat_interval'] for s, r in by_severity.items()} == {
        'sev1': '15m', 'sev2': '1h', 'sev3': '4h', 'sev4': '24h'}
    assert 'routes' in by_severity['sev1'] and 'routes' in by_severity['sev2']
    assert 'routes' not in by_severity['sev3'] and 'routes' not in by_severity['sev4']


def test_every_rule_label_set_has_a_route(default_config):
    """Every severity/escalation pair the shipped rules use reaches the intended receiver."""
    rules_dir = default_rules_dir()
    expected = {(lbl.get('severity'), lbl.get('escalation')): rcv for lbl, rcv in DEFAULT_ROUTES}
    seen = set()
    for name in sorted(os.listdir(rules_dir)):
        with open(os.path.join(rules_dir, name)) as handle:
            for group in yaml.safe_load(handle)['groups']:
                for rule in group['rules']:
                    if 'alert' in rule:
                        seen.add((rule['labels']['severity'], rule['labels'].get('escalation')))
    assert seen
    for severity, escalation in sorted(seen, key=str):
        labels = {'severity': severity}
        if escalation:
            labels['escalation'] = escalation
        assert _route(default_config, labels) == expected[(severity, escalation)], labels


def test_custom_receivers_and_extra_route(tmp_path):
    receivers = [
        {'name': 'pager', 'webhook_configs': [{'url': 'http://127.0.0.1:9/pager', 'send_resolved': True}]},
        {'name': 'chat', 'webhook_configs': [{'url': 'http://127.0.0.1:9/chat'}]},
        {'name': 'boss', 'webhook_configs': [{'url': 'http://127.0.0.1:9/boss'}]},
        {'name': 'null'},
    ]
    result, config = _render(tmp_path, {
        'alertmanager_receivers': receivers,
        'alertmanager_default_receiver': 'chat',
        'alertmanager_severity_routes': {
            'sev1': {'receiver': 'pager', 'repeat_interval': '15m'},
            'sev2': {'receiver': 'pager'},
            'sev3': {'receiver': 'chat'},
            'sev4': {'receiver': 'chat'},
        },
        'alertmanager_escalation_receivers': {'lead': 'boss', 'manager': 'boss', 'exec': 'boss'},
        'alertmanager_extra_routes': [{'matchers': ['alertname="Watchdog"'], 'receiver': 'null'}],
    })
    assert result.returncode == 0, result.stdout
    assert _route(config, {'alertname': 'Watchdog', 'severity': 'sev1'}) == 'null'
    assert _route(config, {'severity': 'sev1', 'escalation': 'exec'}) == 'boss'
    assert _route(config, {'severity': 'sev2'}) == 'pager'
    assert _route(config, {'severity': 'sev4'}) == 'chat'


def test_undefined_receiver_is_refused_and_live_config_kept(tmp_path):
    result, config = _render(tmp_path)
    assert result.returncode == 0, result.stdout
    before = config.read_text()
    result, _unused = _render(tmp_path, {'alertmanager_escalation_receivers': {'lead': 'nobody'}})
    assert result.returncode != 0
    assert config.read_text() == before


def test_amtool_refusal_keeps_live_config(tmp_path):
    """A config amtool rejects (here: a bad inhibit matcher) never replaces the live file."""
    result, config = _render(tmp_path)
    assert result.returncode == 0, result.stdout
    before = config.read_text()
    result, _unused = _render(tmp_path, {'alertmanager_inhibit_rules': [
        {'source_matchers': ['severity=~"(unclosed"'], 'target_matchers': ['severity="sev4"']}]})
    assert result.returncode != 0
    assert 'failed to validate' in result.stdout
    assert config.read_text() == before


def _rule_labels(alertname):
    rules_dir = default_rules_dir()
    found = []
    for name in sorted(os.listdir(rules_dir)):
        with open(os.path.join(rules_dir, name)) as handle:
            for group in yaml.safe_load(handle)['groups']:
                found += [dict(rule['labels'], alertname=alertname) for rule in group['rules']
                          if rule.get('alert') == alertname]
    assert found, alertname
    return found


def _extra_routes_from_docs(mentioning):
    """The alertmanager_extra_routes snippet of docs/monitoring.md that mentions ``mentioning``."""
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        'docs', 'monitoring.md')
    with open(docs) as handle:
        text = handle.read()
    for block in re.findall(r'```yaml\n(alertmanager_extra_routes:\n.*?)```', text, re.S):
        if mentioning in block:
            return yaml.safe_load(block)['alertmanager_extra_routes']
    raise AssertionError('docs/monitoring.md lost the extra route for %s' % mentioning)


def test_worker_down_pages_like_the_runbook(default_config):
    """Runbook 4.3: WorkerDown is critical - the on-call is paged, then the lead and the manager (5.3)."""
    receivers = {labels['escalation']: _route(default_config, labels) for labels in _rule_labels('WorkerDown')}
    assert receivers == {'oncall': 'oncall-pager', 'lead': 'team-lead', 'manager': 'engineering-manager'}


def test_documented_route_keeps_worker_down_in_chat(tmp_path):
    """The option docs/monitoring.md offers to sites with several replicas per worker group."""
    result, config = _render(tmp_path, {'alertmanager_extra_routes': _extra_routes_from_docs('WorkerDown')})
    assert result.returncode == 0, result.stdout
    assert {_route(config, labels) for labels in _rule_labels('WorkerDown')} == {'team-chat'}
    # Every worker down still pages.
    assert {_route(config, labels) for labels in _rule_labels('AllWorkersDown')
            if labels['escalation'] == 'oncall'} == {'oncall-pager'}


def test_backup_alerts_go_to_chat_and_the_documented_route_pages_them(default_config, tmp_path):
    backup_alerts = [labels for name in ('BackupStale', 'BackupUnreadable', 'BackupRestoreFailed',
                                         'BackupVerificationOverdue', 'BackupJobOverdue')
                     for labels in _rule_labels(name)]
    assert {_route(default_config, labels) for labels in backup_alerts} == {'team-chat'}
    result, config = _render(tmp_path, {'alertmanager_extra_routes': _extra_routes_from_docs('service="backup"')})
    assert result.returncode == 0, result.stdout
    assert {_route(config, labels) for labels in backup_alerts} == {'oncall-pager'}
    assert {_route(config, labels) for labels in _rule_labels('BackupVerificationMissing')} == {'team-chat'}
