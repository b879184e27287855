"""cerniq.ops.prometheus_rules against a real Prometheus 2.42 and promtool.

Each test starts its own Prometheus (cerniq_testkit/monitoring.py) whose rule_files glob covers a
private rules directory, runs the module as Ansible does, and reads back what Prometheus really
loaded (/api/v1/rules, its own /metrics).
"""

import os
import shutil
import tempfile

import pytest

from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.monitoring import PrometheusServer

pytestmark = pytest.mark.skipif(shutil.which('prometheus') is None or shutil.which('promtool') is None,
                                reason='prometheus/promtool (Debian prometheus) not installed')

MANIFEST = '.cerniq-rules-manifest.json'
QUEUES = """groups:
  - name: site-queues
    rules:
      - record: site:jobs:sum
        expr: sum(up)
      - alert: SiteQueueDeep
        expr: site:jobs:sum > 1000
        for: 5m
        labels: {severity: sev3}
        annotations:
          summary: "Queue {{ $labels.queue }} is deep"
"""
NODES = """groups:
  - name: site-nodes
    rules:
      - alert: SiteNodeDown
        expr: up{job="node"} == 0
        labels: {severity: sev3}
"""
DUPLICATE = NODES + """      - alert: SiteNodeDown
        expr: up{job="node"} == 0
        labels: {severity: sev3}
"""
BROKEN = """groups:
  - name: site-broken
    rules:
      - alert: Broken
        expr: rate(up[5m]
"""
QUEUES_TEST = """rule_files:
  - ../../somewhere/in/the/source/tree/queues.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="a"}'
        values: '%s'
    alert_rule_test:
      - eval_time: 10m
        alertname: SiteQueueDeep
        exp_alerts:
          - exp_labels: {severity: sev3}
            exp_annotations: {summary: "Queue  is deep"}
"""


@pytest.fixture
def rules_dir():
    # Not under pytest's 0700 tmp_path: a Prometheus running as nobody must read it.
    path = tempfile.mkdtemp(prefix='cerniq-rules-dir-')
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def prometheus(rules_dir):
    with PrometheusServer(rule_files=[rules_dir + '/*.yml'], extra_args=['--web.enable-lifecycle']) as server:
        yield server


def _files(**texts):
    return [dict(name=name.replace('_', '-') + '.yml', content=text) for name, text in sorted(texts.items())]


def _args(rules_dir, server, files, **extra):
    return dict(rules_dir=rules_dir, files=files, prometheus_url=server.url, **extra)


def loaded(server):
    """{group name: rule count} Prometheus runs now."""
    return {g['name']: len(g['rules']) for g in server.get_json('/api/v1/rules')['data']['groups']}


def own_metric(server, name):
    import urllib.request
    with urllib.request.urlopen(server.url + '/metrics', timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + ' '):
                return float(line.split()[1])
    return None


def _dir_state(rules_dir):
    state = {}
    for name in sorted(os.listdir(rules_dir)):
        path = os.path.join(rules_dir, name)
        with open(path, 'rb') as handle:
            state[name] = (handle.read(), oct(os.stat(path).st_mode & 0o7777))
    return state


def test_check_mode_deploy_rerun_and_rule_diff(rules_dir, prometheus):
    files = _files(queues=QUEUES, nodes=NODES)
    check = run_module('prometheus_rules', _args(rules_dir, prometheus, files), check_mode=True, diff=True)
    assert not check.failed, check
    assert check['changed'] and check['files_added'] == ['nodes.yml', 'queues.yml']
    assert check['rules_added'] == ['nodes.yml: site-nodes/SiteNodeDown', 'queues.yml: site-queues/SiteQueueDeep',
                                    'queues.yml: site-queues/site:jobs:sum']
    assert [d['after_header'] for d in check['diff']] == [os.path.join(rules_dir, 'nodes.yml'),
                                                          os.path.join(rules_dir, 'queues.yml')]
    assert os.listdir(rules_dir) == [] and loaded(prometheus) == {}

    first = run_module('prometheus_rules', _args(rules_dir, prometheus, files))
    assert not first.failed, first
    assert first['changed'] and first['reloaded']
    assert loaded(prometheus) == {'site-queues': 2, 'site-nodes': 1}
    assert first['groups'] == [dict(file='nodes.yml', group='site-nodes', rules=1),
                               dict(file='queues.yml', group='site-queues', rules=2)]
    assert sorted(os.listdir(rules_dir)) == [MANIFEST, 'nodes.yml', 'queues.yml']
    with open(os.path.join(rules_dir, 'queues.yml')) as handle:
        assert handle.read() == QUEUES  # verbatim: the Prometheus template is not rendered
    reloaded_at = own_metric(prometheus, 'prometheus_config_last_reload_success_timestamp_seconds')

    again = run_module('prometheus_rules', _args(rules_dir, prometheus, files))
    assert not again.failed, again
    assert again['changed'] is False and again['reloaded'] is False
    assert own_metric(prometheus, 'prometheus_config_last_reload_success_timestamp_seconds') == reloaded_at

    # A changed threshold and a dropped file, in check mode: reported, nothing touched.
    before = _dir_state(rules_dir)
    edited = _files(queues=QUEUES.replace('> 1000', '> 5000'))
    preview = run_module('prometheus_rules', _args(rules_dir, prometheus, edited), check_mode=True, diff=True)
    assert not preview.failed, preview
    assert preview['changed'] and preview['files_changed'] == ['queues.yml'] and preview['files_removed'] == ['nodes.yml']
    assert preview['rules_changed'] == ['queues.yml: site-queues/SiteQueueDeep']
    assert preview['rules_removed'] == ['nodes.yml: site-nodes/SiteNodeDown'] and preview['rules_added'] == []
    assert any('> 5000' in d['after'] and '> 1000' in d['before'] for d in preview['diff'])
    assert _dir_state(rules_dir) == before and loaded(prometheus) == {'site-queues': 2, 'site-nodes': 1}

    applied = run_module('prometheus_rules', _args(rules_dir, prometheus, edited))
    assert not applied.failed, applied
    assert loaded(prometheus) == {'site-queues': 2}
    assert sorted(os.listdir(rules_dir)) == [MANIFEST, 'queues.yml']


@pytest.mark.parametrize('bad', [BROKEN, DUPLICATE], ids=['syntax', 'duplicate-lint'])
def test_broken_rule_file_never_goes_live(rules_dir, prometheus, bad):
    files = _files(queues=QUEUES, nodes=NODES)
    assert not run_module('prometheus_rules', _args(rules_dir, prometheus, files)).failed
    before = _dir_state(rules_dir)
    reloaded_at = own_metric(prometheus, 'prometheus_config_last_reload_success_timestamp_seconds')

    result = run_module('prometheus_rules', _args(rules_dir, prometheus, _files(queues=QUEUES, nodes=bad)))
    assert result.failed
    assert result['msg'].startswith('promtool check rules refused the rule files, nothing was changed: ')
    assert 'nodes.yml' in result['msg'] and '\n' not in result['msg']
    assert result['changed'] is False
    assert _dir_state(rules_dir) == before
    assert loaded(prometheus) == {'site-queues': 2, 'site-nodes': 1}
    # Not even reloaded.
    assert own_metric(prometheus, 'prometheus_config_last_reload_success_timestamp_seconds') == reloaded_at
    assert own_metric(prometheus, 'prometheus_config_last_reload_successful') == 1


def test_promtool_tests_run_before_anything_is_written(rules_dir, prometheus):
    files = _files(queues=QUEUES)
    passing = [dict(name='queues.test.yml', content=QUEUES_TEST % '2000x20')]
    result = run_module('prometheus_rules', _args(rules_dir, prometheus, files, tests=passing))
    assert not result.failed, result
    assert result['tests_run'] == ['queues.test.yml'] and loaded(prometheus) == {'site-queues': 2}

    # The threshold raised to 5000: the test's 2000 jobs no longer fire it - refused, nothing changed.
    before = _dir_state(rules_dir)
    raised = _files(queues=QUEUES.replace('> 1000', '> 5000'))
    failing = run_module('prometheus_rules', _args(rules_dir, prometheus, raised, tests=passing))
    assert failing.failed
    assert failing['msg'].startswith('promtool test rules failed, nothing was changed: ')
    assert 'SiteQueueDeep' in failing['msg']
    assert _dir_state(rules_dir) == before

    unknown = [dict(name='other.test.yml', content=QUEUES_TEST.replace('queues.yml', 'other.yml') % '1x1')]
    missing = run_module('prometheus_rules', _args(rules_dir, prometheus, files, tests=unknown))
    assert missing.failed and 'reads rule file ../../somewhere/in/the/source/tree/other.yml, which is not in the set' \
        in missing['msg']


def test_reload_failure_rolls_back(rules_dir):
    """Prometheus runs as nobody (Debian runs it as prometheus); a set written 0600 root passes promtool
    (run as root) but Prometheus cannot read it: the reload fails, the old files come back and are loaded."""
    with PrometheusServer(rule_files=[rules_dir + '/*.yml'], extra_args=['--web.enable-lifecycle'],
                          user='nobody') as server:
        files = _files(queues=QUEUES, nodes=NODES)
        assert not run_module('prometheus_rules', _args(rules_dir, server, files)).failed
        before = _dir_state(rules_dir)
        assert loaded(server) == {'site-queues': 2, 'site-nodes': 1}

        edited = _files(queues=QUEUES.replace('> 1000', '> 5000'), nodes=NODES)
        result = run_module('prometheus_rules', _args(rules_dir, server, edited, mode='0600'))
        assert result.failed
        assert result['rolled_back'] is True and result['changed'] is False
        assert result['msg'].startswith('Prometheus refused the reload: HTTP 500')
        assert 'errors occurred while applying the new configuration' in result['msg']
        assert 'permission denied' in server.log_tail()  # why: Prometheus' own log
        assert result['msg'].endswith('rolled back: the previous rule files are back on disk and Prometheus '
                                      'reloaded them')
        assert result['files_changed'] == ['nodes.yml', 'queues.yml']
        assert _dir_state(rules_dir) == before  # content, mode and manifest
        assert loaded(server) == {'site-queues': 2, 'site-nodes': 1}
        assert own_metric(server, 'prometheus_config_last_reload_successful') == 1
        rules = server.get_json('/api/v1/rules')['data']['groups']
        deep = [r for g in rules for r in g['rules'] if r['name'] == 'SiteQueueDeep']
        assert deep[0]['query'] == 'site:jobs:sum > 1000'  # the old threshold is what runs


def test_verification_failure_rolls_back(rules_dir, prometheus):
    """A file outside prometheus.yml's rule_files glob (*.yml) reloads fine but never loads."""
    assert not run_module('prometheus_rules', _args(rules_dir, prometheus, _files(queues=QUEUES))).failed
    before = _dir_state(rules_dir)
    files = _files(queues=QUEUES) + [dict(name='nodes.yaml', content=NODES)]
    result = run_module('prometheus_rules', _args(rules_dir, prometheus, files))
    assert result.failed and result['rolled_back']
    assert 'nodes.yaml: expected site-nodes (1 rules), Prometheus has nothing' in result['msg']
    assert "is the rules directory in prometheus.yml's rule_files?" in result['msg']
    assert _dir_state(rules_dir) == before
    assert loaded(prometheus) == {'site-queues': 2}


def test_http_reload_refused_without_lifecycle_api(rules_dir):
    with PrometheusServer(rule_files=[rules_dir + '/*.yml']) as server:
        result = run_module('prometheus_rules', _args(rules_dir, server, _files(queues=QUEUES)))
        assert result.failed and result['rolled_back']
        assert 'HTTP 403' in result['msg'] and '--web.enable-lifecycle' in result['msg']
        assert os.listdir(rules_dir) == []  # the new file is gone again, no manifest was left
        # SIGHUP to its pid works on the same Prometheus.
        ok = run_module('prometheus_rules', _args(rules_dir, server, _files(queues=QUEUES), reload='signal',
                                                  pid=server.proc.pid))
        assert not ok.failed, ok
        assert ok['reloaded'] and loaded(server) == {'site-queues': 2}


def test_files_on_disk_but_not_loaded_are_reloaded(rules_dir, prometheus):
    written = run_module('prometheus_rules', dict(rules_dir=rules_dir, files=_files(queues=QUEUES), reload='none'))
    assert not written.failed and written['changed'] and not written['reloaded']
    assert loaded(prometheus) == {}
    result = run_module('prometheus_rules', _args(rules_dir, prometheus, _files(queues=QUEUES)))
    assert not result.failed, result
    assert result['changed'] and result['reloaded'] and result['files_added'] == []
    assert loaded(prometheus) == {'site-queues': 2}


def test_only_owned_files_are_removed_unless_exclusive(rules_dir, prometheus):
    with open(os.path.join(rules_dir, 'foreign.yml'), 'w') as handle:
        handle.write(NODES.replace('site-nodes', 'foreign'))
    first = run_module('prometheus_rules', _args(rules_dir, prometheus, _files(queues=QUEUES, nodes=NODES)))
    assert not first.failed, first
    assert loaded(prometheus) == {'site-queues': 2, 'site-nodes': 1, 'foreign': 1}
    dropped = run_module('prometheus_rules', _args(rules_dir, prometheus, _files(queues=QUEUES)))
    assert dropped['files_removed'] == ['nodes.yml']
    assert sorted(os.listdir(rules_dir)) == [MANIFEST, 'foreign.yml', 'queues.yml']
    exclusive = run_module('prometheus_rules', _args(rules_dir, prometheus, _files(queues=QUEUES), exclusive=True))
    assert exclusive['files_removed'] == ['foreign.yml']
    assert loaded(prometheus) == {'site-queues': 2}


@pytest.mark.parametrize('args, message', [
    (dict(rules_dir='relative/dir'), 'rules_dir must be an absolute path'),
    (dict(files=[dict(name='../escape.yml', content=QUEUES)]), "rule file name '../escape.yml'"),
    (dict(files=[dict(name='a.yml', content=QUEUES), dict(name='a.yml', content=NODES)]), 'rule file a.yml is given twice'),
    (dict(files=[dict(name='a.yml', content='groups: [unclosed')]), 'a.yml is not valid YAML'),
    (dict(mode='rw-r--r--'), "mode 'rw-r--r--' is not an octal mode"),
    (dict(owner='\x00'), "unknown owner or group: owner '\\x00'"),  # a 10x hostile hunt's: a ValueError traceback
    (dict(reload_timeout='30'), "reload_timeout: '30' is not a duration with a unit"),
    (dict(prometheus_url='http://127.0.0.1:1'), 'Prometheus at http://127.0.0.1:1 does not answer'),
])
def test_bad_input_is_one_clear_line_and_changes_nothing(rules_dir, args, message):
    params = dict(rules_dir=rules_dir, files=_files(queues=QUEUES), prometheus_url='http://127.0.0.1:1', **{})
    params.update(args)
    result = run_module('prometheus_rules', params)
    assert result.failed and message in result['msg'], result
    assert 'Traceback' not in result['msg'] and '\n' not in result['msg']
    assert os.listdir(rules_dir) == []


def test_without_pyyaml_check_mode_reports_files_and_a_run_refuses(rules_dir, tmp_path):
    """A fresh host in check mode: python3-yaml (and promtool) not installed yet."""
    from cerniq_testkit.ansible_run import collections_root
    blocker = tmp_path / 'no-yaml' / 'yaml'
    blocker.mkdir(parents=True)
    (blocker / '__init__.py').write_text("raise ImportError('PyYAML is not installed (test)')\n")
    env = {'PYTHONPATH': '%s:%s' % (blocker.parent, collections_root())}
    args = dict(rules_dir=rules_dir, files=_files(queues=QUEUES), reload='none', promtool_path='/nonexistent/promtool')
    check = run_module('prometheus_rules', args, check_mode=True, env=env)
    assert not check.failed, check
    assert check['changed'] and check['files_added'] == ['queues.yml'] and check['rules_added'] == []
    warnings = ' '.join(str(w) for w in check['warnings'])  # 2.19: structured warning summaries
    assert 'PyYAML (python3-yaml) is not installed yet' in warnings and 'were not validated' in warnings
    run = run_module('prometheus_rules', dict(args, promtool_path=shutil.which('promtool')), env=env)
    assert run.failed and run['msg'] == 'PyYAML is needed on the Prometheus host to read rule files (Debian: python3-yaml)'
    assert os.listdir(rules_dir) == []
