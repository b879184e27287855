"""No runbook value is written as a literal outside the settings (roles/cerniq/defaults/main.yml).

RUNBOOK_VALUES lists the values of /work/shared/runbook-etapa1.md the collection uses - thresholds,
durations, concurrency, SLA minutes, names - each with the spellings it could take in code. The scan
covers roles/ and playbooks/ (YAML, Jinja, JSON, Python, shell; comments removed), and plugins/
for the values that have a name there (see PLUGIN_VALUES). Left out: documentation (*.md, role
README, meta/argument_specs.yml, which document what the defaults derive to), tests and the schema.

The alert rule templates are also checked structurally: every threshold an alert compares with and
every `for:` comes from a setting ([[ ... ]]), never a number.

plugins/: a module may keep a runbook value as the default of one of its options - documented in its
DOCUMENTATION (ansible-test validate-modules checks doc and argument_spec agree) so the module also
works without the settings role - and its engine the same default. Numbers are not scanned there
(milliseconds, HTTP statuses and batch sizes make 1000, 300 or 0.5 meaningless without context);
named values are, and PLUGIN_ALLOWED says where each may stay and why.
"""

import ast
import io
import os
import re
import tokenize

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETTINGS = os.path.join('roles', 'cerniq', 'defaults', 'main.yml')
RULE_TEMPLATES = os.path.join(REPO, 'roles', 'prometheus', 'templates', 'rules')

# name -> (runbook section, regex of its spellings, the setting of roles/cerniq holding it)
RUNBOOK_VALUES = {
    'queue depth 1000 / 5000': ('4.3, 6.2', r'(?<![\w.:-])(1000|5000)(?![\w.])', 'cerniq_scaling_thresholds'),
    'processing latency 5 / 15 minutes in seconds': ('6.2', r'(?<![\w.:-])(300|900)(?![\w.])', 'cerniq_scaling_thresholds'),
    'connections 60 / 80 %, memory and disk 70 / 85 %': (
        '6.2', r'(?<![\w.:-])0\.(6|7|8|85)(?![\d])|(?<![\w.:-])(60|70|80|85) ?%', 'cerniq_scaling_thresholds'),
    'error rates 10 % / 50 %, job failures 5 %': (
        '4.3, 5.1', r'(?<![\w.:-])0\.(1|5|05)(?![\d])|(?<![\w.:-])(10|50) ?%',
        'cerniq_alert_enrichment_error_rate cerniq_alert_high_job_failure_rate'),
    'HITL pending 50 / 100': ('4.1, 4.3', r'(?<![\w.:-])(50|100)(?![\w.%-])', 'cerniq_hitl_pending_thresholds'),
    'slow query mean 5 s': ('4.3', r'(?<![\w.:%-])5 ?(s|sec|seconds)\b', 'cerniq_alert_postgres_slow_queries'),
    'import stuck after 30 minutes': (
        '2.1', r'(?<![\w.:-])(30 ?(m|min|minutes)|1800)(?![\w])|default\(30\)', 'cerniq_stuck_after_minutes'),
    'release window 2 hours / 120 minutes': ('2.3', r'(?<![\w.:-])120(?![\w])|2 hours', 'cerniq_release_window_minutes'),
    'overloaded above 10 tasks': ('2.3', r'default\(10\)', 'cerniq_max_tasks_per_operator'),
    'auto-approve confidence 0.90': ('2.3', r'(?<![\w.:-])0\.90?(?![\d])', 'cerniq_auto_approve_min_confidence'),
    'auto-approved type': ('2.3', r'dedup_review', 'cerniq_auto_approve_types'),
    'enrichment concurrency ANAF=1 TERMENE=5': ('2.2', r'(ANAF|TERMENE)_CONCURRENCY=\d', 'cerniq_enrichment_worker_env'),
    'worker containers': (
        '2.1, 2.2, 2.4', r'cerniq-workers-(ingest|enrichment|scoring)',
        'cerniq_ingest_worker cerniq_enrichment_worker cerniq_scoring_worker'),
    'queue names': (
        '2.1, 2.2, 2.4', r'bronze:ingest:(csv|xlsx)|silver:enrich:(anaf-fiscal-status|termene)|silver:score:quality',
        'cerniq_queues cerniq_enrichment_queues cerniq_scoring_queues'),
    'retention 30 / 90 days': ('3.1', r'(?<![\w.:-])(30|90) days', 'cerniq_bronze_purge_older_than cerniq_enrichment_log_older_than'),
    'Redis cleanup patterns': ('3.1', r'cache:\*|session:expired:\*', 'cerniq_redis_cleanup_patterns'),
    'breaker and rate-limit keys': (
        '2.2', r'(circuit|rate_limit):\{source\}', 'cerniq_circuit_state_key cerniq_circuit_failures_key cerniq_rate_limit_key'),
    'escalation and response times': (
        '5.1, 5.3', r'repeat_interval: ?"?(15m|1h|4h|24h)\b|(?<![\w.])1h5m|4h5m\b', 'cerniq_escalation_after cerniq_response_time'),
}
PLUGIN_VALUES = ('auto-approve confidence 0.90', 'auto-approved type', 'enrichment concurrency ANAF=1 TERMENE=5',
                 'worker containers', 'queue names', 'Redis cleanup patterns', 'breaker and rate-limit keys')

# (path, value name, text on the line): where a match is not the runbook value, or may stay, and why.
ALLOWED = {
    ('roles/alertmanager/defaults/main.yml', 'import stuck after 30 minutes', 'group_interval: 30m'):
        'SEV4 group interval, a batching choice of the role, not the 30 minutes of runbook 2.1',
    ('roles/alertmanager/defaults/main.yml', 'escalation and response times', 'alertmanager_repeat_interval: 4h'):
        'default route (alerts without a severity), not a runbook 5.1 response time',
    ('roles/postgres_exporter/defaults/main.yml', 'HITL pending 50 / 100', 'postgres_exporter_stat_statements_limit: 100'):
        'rows of pg_stat_statements kept, not the HITL backlog',
    ('roles/maintenance/templates/cron.j2', 'release window 2 hours / 120 minutes', 'limit + 120'):
        'seconds of the timeout(1) backstop, not the runbook 2.3 release window',
    ('roles/maintenance/templates/cerniq-maintenance@.service.j2', 'release window 2 hours / 120 minutes', '+ 120'):
        'seconds of the systemd backstop, not the runbook 2.3 release window',
    ('roles/prometheus/templates/rules/_cerniq.j2', 'HITL pending 50 / 100', '/ 100'):
        'percent to ratio',
}
PLUGIN_ALLOWED = {
    'plugins/modules/approval_tasks.py': 'documented option defaults (approval_types, min_confidence) of the module',
    'plugins/module_utils/cerniq/approvals.py': "the same defaults in the module's engine",
    'plugins/module_utils/cerniq/synthetic.py': "lab data generator: writes the runbook's queues and approval types as data",
    'plugins/module_utils/cerniq/circuit.py': "documented key-template defaults of cerniq.ops.circuit_breaker's engine",
    'plugins/modules/circuit_breaker.py': 'documented key-template option defaults of the module',
    'plugins/module_utils/redis_keys.py': 'its error messages give cache:* as an example of a pattern',
}
TEXT_SUFFIXES = ('.yml', '.yaml', '.j2', '.json', '.py', '.sh', '.cfg', '.conf')


def _yaml_jinja_text(text):
    """The text without YAML/shell comments and Jinja comments, lines kept in place."""
    text = re.sub(r'\{#.*?#\}', lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    lines = []
    for line in text.split('\n'):
        if line.lstrip().startswith('#'):
            line = ''
        lines.append(re.sub(r'\s#\s.*$', '', line))
    return lines


def _python_code(text):
    """Python source without comments, docstrings and DOCUMENTATION / EXAMPLES / RETURN, lines kept."""
    tree = ast.parse(text)
    drop = set()
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            drop.update(range(body[0].lineno, body[0].end_lineno + 1))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ('DOCUMENTATION', 'EXAMPLES', 'RETURN')
                                                for t in node.targets):
            drop.update(range(node.lineno, node.end_lineno + 1))
    comments = {tok.start[0]: tok.start[1] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT}
    return ['' if number in drop else line[:comments.get(number, len(line))]
            for number, line in enumerate(text.split('\n'), 1)]


def _files(top):
    for directory, _dirs, names in os.walk(os.path.join(REPO, top)):
        for name in sorted(names):
            path = os.path.relpath(os.path.join(directory, name), REPO)
            if path == SETTINGS or name.endswith('.md') or name == 'argument_specs.yml' or '__pycache__' in path:
                continue
            if name.endswith(TEXT_SUFFIXES):
                yield path


def _lines(path):
    with open(os.path.join(REPO, path)) as handle:
        text = handle.read()
    return _python_code(text) if path.endswith('.py') else _yaml_jinja_text(text)


def _findings(tops, values):
    found = []
    for top in tops:
        for path in _files(top):
            for number, line in enumerate(_lines(path), 1):
                for name in values:
                    if re.search(RUNBOOK_VALUES[name][1], line) and not any(
                            (path, name) == key[:2] and key[2] in line for key in ALLOWED):
                        found.append('%s:%d: %s (runbook %s, setting %s): %s' % (
                            path, number, name, RUNBOOK_VALUES[name][0], RUNBOOK_VALUES[name][2], line.strip()))
    return found


def test_roles_and_playbooks_take_runbook_values_from_the_settings():
    found = _findings(('roles', 'playbooks'), RUNBOOK_VALUES)
    assert not found, 'runbook values written outside %s:\n%s' % (SETTINGS, '\n'.join(found))


def test_plugins_keep_runbook_names_only_as_documented_defaults():
    found = [f for f in _findings(('plugins',), PLUGIN_VALUES) if f.split(':')[0] not in PLUGIN_ALLOWED]
    assert not found, 'runbook values in plugins/ outside documented defaults:\n%s' % '\n'.join(found)


def test_every_value_has_its_setting():
    """Each listed value lives in a setting of roles/cerniq (where a site changes it)."""
    with open(os.path.join(REPO, SETTINGS)) as handle:
        settings = yaml.safe_load(handle)
    missing = [(name, var) for name, (_s, _p, variables) in RUNBOOK_VALUES.items() for var in variables.split()
               if var not in settings]
    assert not missing, missing


@pytest.mark.parametrize('name', sorted(n for n in os.listdir(RULE_TEMPLATES) if n.startswith('cerniq-')))
def test_rule_templates_take_thresholds_and_for_from_the_settings(name):
    with open(os.path.join(RULE_TEMPLATES, name)) as handle:
        lines = _yaml_jinja_text(handle.read())
    fixed_for = [line.strip() for line in lines if re.match(r'^\s*for:', line) and '[[' not in line]
    fixed_threshold = [line.strip() for line in lines
                       if re.search(r'(>|<|==|>=|<=|!=)\s*(?!0\b)\d', line) and not re.search(r'==\s*0\b', line)]
    assert not fixed_for and not fixed_threshold, (fixed_for, fixed_threshold)


def test_the_scan_finds_a_literal(tmp_path):
    """The scan can fail: a runbook value written into a role would be reported."""
    lines = _yaml_jinja_text('# 1000 in a comment is fine\nfoo_backlog_warn: 1000\nworker: cerniq-workers-ingest\n')
    hits = {name for line in lines for name, (_s, pattern, _v) in RUNBOOK_VALUES.items() if re.search(pattern, line)}
    assert hits == {'queue depth 1000 / 5000', 'worker containers'}
