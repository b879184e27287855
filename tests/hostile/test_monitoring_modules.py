"""Hostile input for the monitoring modules, against real Prometheus and Alertmanager processes:
prometheus_rules (a rules directory Prometheus loads, with neighbours outside it), alertmanager_silence and
alertmanager_silence_info (silences of other owners, live and expired, that no run may touch).
"""

import json
import os
import shutil
import tempfile
import urllib.request

from hypothesis import assume, given, strategies as st
import pytest

from tests.hostile import known
from tests.hostile.argspec import module_args
from tests.hostile.harness import run_example
from tests.hostile.invariants import INVARIANTS
from tests.hostile.profiles import budget
from cerniq_testkit.monitoring import AlertmanagerServer, PrometheusServer

# ------------------------------------------------------------------------------- prometheus_rules
VALID = """groups:
  - name: hostile-queues
    rules:
      - record: hostile:up:sum
        expr: sum(up)
      - alert: HostileDeep
        expr: hostile:up:sum > 1000
        labels: {severity: sev3}
"""
OTHER = """groups:
  - name: hostile-nodes
    rules:
      - alert: HostileNodeDown
        expr: up == 0
"""
BROKEN = 'groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: rate(up[5m]\n'
DUPLICATE_GROUP = VALID
NOT_YAML = 'groups: [\n\x00'
ABSOLUTE = '/tmp/cerniq-hostile-absolute.yml'   # a name that is an absolute path: it must not be written
CONTENTS = [VALID, VALID, OTHER, OTHER, BROKEN, NOT_YAML, '', 'groups: []\n', DUPLICATE_GROUP]
NAMES = ['queues.yml', 'queues.yml', 'nodes.yml', 'nodes.yml', '../escape.yml', '.hidden.yml', 'sub/dir.yml', '',
         'x.txt', 'ț.yml', '.cerniq-rules-manifest.json', ABSOLUTE, 'queues.yaml']


@pytest.fixture(scope='module')
def rules_env():
    base = tempfile.mkdtemp(prefix='cerniq-hostile-rules-')
    os.chmod(base, 0o755)
    rules = os.path.join(base, 'rules')
    os.mkdir(rules)
    os.chmod(rules, 0o755)
    with PrometheusServer(rule_files=[rules + '/*.yml'], extra_args=['--web.enable-lifecycle']) as server:
        yield base, rules, server
    shutil.rmtree(base, ignore_errors=True)


def _tree(base):
    state = dict(absolute=os.path.exists(ABSOLUTE))
    for root, _dirs, names in os.walk(base):
        for name in names:
            path = os.path.join(root, name)
            with open(path, 'rb') as handle:
                state[os.path.relpath(path, base)] = (handle.read(), oct(os.stat(path).st_mode & 0o7777))
    return state


def _loaded(server):
    groups = server.get_json('/api/v1/rules')['data']['groups']
    return sorted((g['file'], g['name'], len(g['rules'])) for g in groups)


def _reset_rules(base, rules, server, seeded):
    if os.path.exists(ABSOLUTE):
        os.remove(ABSOLUTE)
    for entry in os.listdir(base):
        path = os.path.join(base, entry)
        if entry != 'rules':
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    for entry in os.listdir(rules):
        path = os.path.join(rules, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(os.path.join(base, 'outside'))
    with open(os.path.join(base, 'outside', 'canary.yml'), 'w') as handle:
        handle.write(OTHER)
    for name, content in seeded:
        with open(os.path.join(rules, name), 'w') as handle:
            handle.write(content)
    request = urllib.request.Request(server.url + '/-/reload', method='POST')
    with urllib.request.urlopen(request, timeout=10):
        pass


@budget(15)
@given(data=st.data())
def test_prometheus_rules(rules_env, data):
    base, rules, server = rules_env
    seeded = data.draw(st.lists(st.tuples(st.sampled_from(['old.yml', 'queues.yml', 'notes.txt',
                                                           '.cerniq-rules-manifest.json']),
                                          st.sampled_from([VALID, OTHER, '{"files": 1}', 'garbage'])),
                                max_size=3, unique_by=lambda f: f[0]), label='rules directory')
    # Rule files Prometheus loads are seeded valid, so the seeding reload succeeds.
    seeded = [(name, content) for name, content in seeded if not name.endswith('.yml') or content in (VALID, OTHER)]
    file_entry = st.fixed_dictionaries(dict(name=st.sampled_from(NAMES), content=st.sampled_from(CONTENTS)))
    hints = dict(rules_dir=st.sampled_from([rules] * 5 + [base + '/missing', '/nonexistent', '']),
                 files=st.lists(file_entry, min_size=1, max_size=3), tests=st.sampled_from([[], [dict(
                     name='t.yml', content='rule_files: [queues.yml]\ntests: []\n')]]),
                 reload=st.sampled_from(['http'] * 4 + ['none', 'signal', 'systemd']),
                 prometheus_url=st.sampled_from([server.url] * 4 + ['http://127.0.0.1:9']),
                 mode=st.sampled_from(['0644'] * 3 + ['0777', 'abc', '7777', '0', '644']),
                 owner=st.sampled_from([None] * 4 + ['root', 'no-such-user']),
                 timeout=st.sampled_from(['10s'] * 3 + ['0s', '10', '-1s']),
                 reload_timeout=st.sampled_from(['30s'] * 3 + ['1ms', '30']))
    args = data.draw(module_args('prometheus_rules', hints), label='args')
    check_mode = data.draw(st.booleans(), label='check_mode')
    state = dict(seeded=[name for name, _content in seeded])
    assume(not known.matches('prometheus_rules', args, state, check_mode))
    _reset_rules(base, rules, server, seeded)
    state.update(base=base, rules=rules)
    example = run_example('prometheus_rules', args, check_mode, state,
                          lambda: dict(tree=_tree(base), loaded=_loaded(server)))
    example.assert_ok(INVARIANTS['prometheus_rules'])


# ------------------------------------------------------------------------------- alertmanager silences
@pytest.fixture(scope='module')
def alertmanager():
    with AlertmanagerServer() as server:
        yield server


def _silences(server):
    return dict((s['id'], (s['status']['state'], s['startsAt'], s['endsAt'], s['createdBy'], s['comment'],
                           json.dumps(s['matchers'], sort_keys=True)))
                for s in server.get_json('/api/v2/silences'))


def _post_silence(server, body):
    request = urllib.request.Request(server.url + '/api/v2/silences', data=json.dumps(body).encode(),
                                     headers={'Content-Type': 'application/json'}, method='POST')
    with urllib.request.urlopen(request, timeout=10):
        pass


def _reset_silences(server, seeded):
    for silence_id, value in _silences(server).items():
        if value[0] in ('active', 'pending'):
            request = urllib.request.Request(server.url + '/api/v2/silence/%s' % silence_id, method='DELETE')
            with urllib.request.urlopen(request, timeout=10):
                pass
    for created_by, comment, when in seeded:
        starts = '2020-01-01T00:00:00Z' if when == 'active' else '2999-01-01T00:00:00Z'
        _post_silence(server, dict(matchers=[dict(name='alertname', value='WorkerDown', isRegex=False,
                                                  isEqual=True)], createdBy=created_by, comment=comment,
                                   startsAt=starts, endsAt='2999-12-31T00:00:00Z'))


SILENCE_MATCHERS = [['alertname="WorkerDown"'], ['alertname="WorkerDown"', 'instance="w1"'],
                    [dict(name='alertname', value='WorkerDown')], ['alertname=~"Worker.*"'], [], ['not a matcher'],
                    [dict(name='', value='x')], ['alertname!="x"']]


def _silence_case(data, alertmanager, module, hints):
    seeded = data.draw(st.lists(st.tuples(st.sampled_from(['cerniq.ops', 'someone else']),
                                          st.sampled_from(['restart', 'maintenance', 'other team']),
                                          st.sampled_from(['active', 'pending'])), max_size=3), label='silences')
    urls = [[alertmanager.url]] * 4 + [[alertmanager.url, 'http://127.0.0.1:9'], ['http://127.0.0.1:9'], ['not a url']]
    hints = dict(hints, url=st.sampled_from(urls),
                 matchers=st.sampled_from(SILENCE_MATCHERS), timeout=st.sampled_from(['10s'] * 3 + ['0s', '10']),
                 cluster_timeout=st.sampled_from(['5s'] * 3 + ['-1s', '1ms']))
    args = data.draw(module_args(module, hints), label='args')
    check_mode = data.draw(st.booleans(), label='check_mode')
    state = dict(silences=seeded)
    assume(not known.matches(module, args, state, check_mode))
    _reset_silences(alertmanager, seeded)
    example = run_example(module, args, check_mode, state, lambda: _silences(alertmanager))
    example.assert_ok(INVARIANTS[module])


@budget(15)
@given(data=st.data())
def test_alertmanager_silence(alertmanager, data):
    _silence_case(data, alertmanager, 'alertmanager_silence', dict(
        comment=st.sampled_from(['restart', 'restart', 'maintenance', '', 'ț' * 300]),
        created_by=st.sampled_from(['cerniq.ops'] * 3 + ['someone else', '']),
        duration=st.sampled_from(['10m'] * 3 + ['1s', '10', '-5m', '0s', '1000000d', None]),
        ends_at=st.sampled_from([None] * 8 + ['2999-01-01T00:00:00Z', '2000-01-01T00:00:00Z', 'tomorrow']),
        starts_at=st.sampled_from([None] * 4 + ['2999-01-01T00:00:00Z', '2000-01-01T00:00:00Z', 'x'])))


@budget(10)
@given(data=st.data())
def test_alertmanager_silence_info(alertmanager, data):
    _silence_case(data, alertmanager, 'alertmanager_silence_info', dict(
        comment=st.sampled_from([None, 'restart', '']), created_by=st.sampled_from([None, 'cerniq.ops']),
        labels=st.sampled_from([None, dict(alertname='WorkerDown'), dict(x=1), {}])))
