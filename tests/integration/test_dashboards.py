"""The dashboards of roles/dashboards (rendered with the settings' defaults): valid PromQL on metrics
that exist, both flavours alike.

- every expression of the SigNoz and the Grafana dashboard is written as a recording rule into a
  temporary rule file that ``promtool check rules`` must accept (the Prometheus 2.42 parser);
- every metric name an expression uses is documented in docs/metrics.md or docs/exporters.md, or is
  recorded by the prometheus role's rule files;
- the SigNoz JSON has the shape SigNoz imports (title, layout entries for every widget, panelTypes,
  promql queries) and the HITL panel carries the runbook's 50 / 100 thresholds; the Grafana JSON
  shows the same panels with the same expressions;
- every query of the sql_exporter role is documented in docs/exporters.md;
- the runbook's ``$tenant_id`` variable exists in both flavours, lists the tenants the metrics carry,
  and every panel on a metric with a ``tenant_id`` label filters by it (evaluated by promtool).
"""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from cerniq_testkit.ansible_run import REPO
from cerniq_testkit.rendered import default_dashboards_dir, default_rule_files

# The shipped dashboards as the dashboards role renders them with the settings' defaults.
SIGNOZ = os.path.join(default_dashboards_dir(), 'etapa1-overview.signoz.json')
GRAFANA = os.path.join(default_dashboards_dir(), 'etapa1-overview.grafana.json')
SIGNOZ_PANEL_TYPES = {'graph', 'value', 'table', 'list', 'bar', 'pie', 'histogram', 'trace', 'EMPTY_WIDGET'}
PROMQL_WORDS = {'by', 'without', 'and', 'or', 'unless', 'on', 'ignoring', 'group_left', 'group_right',
                'bool', 'offset', 'inf', 'nan'}


def load(path):
    with open(path) as handle:
        return json.load(handle)


def signoz_queries():
    """[(panel title, expr)] of the SigNoz dashboard."""
    return [(w['title'], q['query']) for w in load(SIGNOZ)['widgets'] for q in w['query']['promql']]


def grafana_queries():
    return [(p['title'], t['expr']) for p in load(GRAFANA)['panels'] for t in p['targets']]


def metric_names(expr):
    """Metric names used by a PromQL expression (strings, matchers, ranges and groupings removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r'\{[^}]*\}', ' ', text)
    text = re.sub(r'\[[^\]]*\]', ' ', text)
    text = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', text)
    names = set()
    for match in re.finditer(r'[a-zA-Z_:][a-zA-Z0-9_:]*', text):
        following = text[match.end():].lstrip()
        if following.startswith('(') or match.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def known_names():
    names = set()
    for doc in ('metrics.md', 'exporters.md'):
        with open(os.path.join(REPO, 'docs', doc)) as handle:
            names.update(re.findall(r'`([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^`]*\})?`', handle.read()))
    for path in default_rule_files():
        with open(path) as handle:
            for group in yaml.safe_load(handle)['groups']:
                names.update(rule['record'] for rule in group['rules'] if 'record' in rule)
    return names


def test_metric_name_extraction():
    expr = 'sum by (queue) (rate(foo_total{a="b(c)"}[5m])) / on (queue) bar:baz:sum > 0 and absent(qux)'
    assert metric_names(expr) == {'foo_total', 'bar:baz:sum', 'qux'}


@pytest.mark.skipif(shutil.which('promtool') is None, reason='promtool (Debian package prometheus) not installed')
def test_every_expression_parses(tmp_path):
    exprs = [expr for _unused, expr in signoz_queries() + grafana_queries()]
    assert exprs
    rules = {'groups': [{'name': 'dashboard-expressions', 'rules': [
        {'record': 'cerniq:dashboard_expression_%d' % n, 'expr': expr} for n, expr in enumerate(exprs)]}]}
    rule_file = tmp_path / 'dashboards.yml'
    rule_file.write_text(yaml.safe_dump(rules))
    proc = subprocess.run(['promtool', 'check', 'rules', str(rule_file)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
    assert 'SUCCESS: %d rules found' % len(exprs) in proc.stdout


def test_promtool_rejects_a_broken_expression(tmp_path):
    """The check above can fail: a syntax error is reported."""
    if shutil.which('promtool') is None:
        pytest.skip('promtool not installed')
    rule_file = tmp_path / 'broken.yml'
    rule_file.write_text(yaml.safe_dump({'groups': [{'name': 'x', 'rules': [
        {'record': 'x:y', 'expr': 'sum by (queue (cerniq_approval_tasks_pending)'}]}]}))
    proc = subprocess.run(['promtool', 'check', 'rules', str(rule_file)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode != 0


@pytest.mark.parametrize('title,expr', signoz_queries() + grafana_queries())
def test_expressions_use_documented_metrics(title, expr):
    unknown = metric_names(expr) - known_names()
    assert metric_names(expr), expr
    assert not unknown, '%s: %s uses undocumented metrics %s' % (title, expr, sorted(unknown))


def test_signoz_dashboard_shape():
    dashboard = load(SIGNOZ)
    assert dashboard['title'] == 'Etapa 1 - Data Pipeline Overview'
    widget_ids = [w['id'] for w in dashboard['widgets']]
    assert len(set(widget_ids)) == len(widget_ids)
    assert sorted(item['i'] for item in dashboard['layout']) == sorted(widget_ids)
    for widget in dashboard['widgets']:
        assert widget['panelTypes'] in SIGNOZ_PANEL_TYPES
        assert widget['query']['queryType'] == 'promql'
        assert widget['query']['promql']
        assert [q['name'] for q in widget['query']['promql']] == [chr(65 + n) for n in range(len(widget['query']['promql']))]
    for item in dashboard['layout']:
        assert 0 <= item['x'] and item['x'] + item['w'] <= 12


def test_runbook_panels_present():
    titles = {title for title, _unused in signoz_queries()}
    assert {'Pipeline Funnel', 'Enrichment Queue Depth', 'Quality Score Distribution', 'HITL Pending Tasks'} <= titles
    queries = dict(signoz_queries())
    assert queries['HITL Pending Tasks'] == 'sum(cerniq_approval_tasks_pending)'
    assert 'queue:bullmq_jobs_waiting:sum' in queries['Enrichment Queue Depth']


def test_hitl_thresholds_50_and_100():
    hitl = next(w for w in load(SIGNOZ)['widgets'] if w['title'] == 'HITL Pending Tasks')
    assert hitl['panelTypes'] == 'value'
    assert sorted((t['thresholdValue'], t['thresholdColor']) for t in hitl['thresholds']) == [(50, 'Orange'), (100, 'Red')]
    gauge = next(p for p in load(GRAFANA)['panels'] if p['title'] == 'HITL Pending Tasks')
    assert gauge['type'] == 'gauge'
    steps = gauge['fieldConfig']['defaults']['thresholds']['steps']
    assert [(s['color'], s['value']) for s in steps] == [('green', None), ('orange', 50), ('red', 100)]


def test_grafana_matches_signoz():
    assert grafana_queries() == signoz_queries()
    grafana = load(GRAFANA)
    assert grafana['uid'] == 'cerniq-etapa1-overview'
    assert [v['name'] for v in grafana['templating']['list']] == ['datasource', 'tenant_id', 'queue']
    for panel in grafana['panels']:
        assert panel['datasource']['uid'] == '${datasource}'


def test_sql_exporter_queries_are_documented():
    with open(os.path.join(REPO, 'roles', 'sql_exporter', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)
    names = [q['name'] for key in ('sql_exporter_fast_queries', 'sql_exporter_slow_queries') for q in defaults[key]]
    assert 'cerniq_approval_tasks_pending' in names and 'cerniq_approval_tasks_overdue' in names
    with open(os.path.join(REPO, 'docs', 'exporters.md')) as handle:
        doc = handle.read()
    assert [name for name in names if '`%s`' % name not in doc] == []


def _tenant_metrics():
    """Metrics the sql_exporter role exports with a tenant_id label."""
    with open(os.path.join(REPO, 'roles', 'sql_exporter', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)
    return {q['name'] for key in ('sql_exporter_fast_queries', 'sql_exporter_slow_queries') for q in defaults[key]
            if 'tenant_id' in q.get('labels', [])}


def test_tenant_id_variable_like_the_runbook():
    """Runbook 4.1 filters the funnel with $tenant_id: both dashboards offer it, all tenants by default."""
    grafana = next(v for v in load(GRAFANA)['templating']['list'] if v['name'] == 'tenant_id')
    assert grafana['type'] == 'query' and grafana['datasource']['uid'] == '${datasource}'
    assert grafana['definition'] == grafana['query']['query'] == 'label_values(cerniq_pipeline_records, tenant_id)'
    assert grafana['multi'] and grafana['includeAll'] and grafana['allValue'] == '.*'
    signoz = [v for v in load(SIGNOZ)['variables'].values() if v['name'] == 'tenant_id']
    assert len(signoz) == 1
    variable = signoz[0]
    assert variable['type'] == 'QUERY' and variable['multiSelect'] and variable['showALLOption']
    assert variable['allSelected']
    assert "JSONExtractString(labels, 'tenant_id')" in variable['queryValue']
    assert "metric_name = 'cerniq_pipeline_records'" in variable['queryValue']
    assert variable['id'] in load(SIGNOZ)['variables']


def test_every_panel_on_tenant_metrics_filters_by_tenant():
    tenant_metrics = _tenant_metrics()
    assert 'cerniq_pipeline_records' in tenant_metrics
    used = [(title, expr) for title, expr in signoz_queries() + grafana_queries() if metric_names(expr) & tenant_metrics]
    assert used
    assert [(title, expr) for title, expr in used if 'tenant_id=~"$tenant_id"' not in expr] == []


@pytest.mark.skipif(shutil.which('promtool') is None, reason='promtool (Debian package prometheus) not installed')
@pytest.mark.parametrize('selected,expected', [
    ('t1', {'bronze': 10, 'gold': 2}),          # one tenant
    ('t1|t2', {'bronze': 15, 'gold': 3}),       # several (both dashboards expand a multi-select to a regex)
    ('.*', {'bronze': 15, 'gold': 3}),          # All
])
def test_funnel_shows_the_selected_tenants(tmp_path, selected, expected):
    funnel = dict(signoz_queries())['Pipeline Funnel'].replace('$tenant_id', selected)
    series = [('t1', 'bronze', 10), ('t1', 'gold', 2), ('t2', 'bronze', 5), ('t2', 'gold', 1)]
    test = {'rule_files': [], 'evaluation_interval': '1m', 'tests': [{
        'interval': '1m',
        'input_series': [{'series': 'cerniq_pipeline_records{tenant_id="%s",layer="%s"}' % (t, layer),
                          'values': '%dx5' % n} for t, layer, n in series],
        'promql_expr_test': [{'expr': funnel, 'eval_time': '2m', 'exp_samples': [
            {'labels': '{layer="%s"}' % layer, 'value': value} for layer, value in sorted(expected.items())]}],
    }]}
    path = tmp_path / 'funnel.test.yml'
    path.write_text(yaml.safe_dump(test))
    proc = subprocess.run(['promtool', 'test', 'rules', str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout
