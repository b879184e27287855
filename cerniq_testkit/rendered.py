"""The alert rules and dashboards as the roles render them from the cerniq settings.

The prometheus role's rules (roles/prometheus/templates/rules/*.j2) and the dashboards role's
dashboards (roles/dashboards/templates/*.j2) are templates. ``render`` runs
playbooks/render_monitoring.yml (the roles' own rendering, through Ansible) with the settings'
defaults or with an inventory / extra vars; ``default_rules_dir`` and ``default_dashboards_dir``
render the defaults once per test process. Tests read rules and dashboards from there.
"""

import atexit
import glob
import os
import shutil
import tempfile

from cerniq_testkit.ansible_run import REPO, run_playbook

RULE_TEMPLATES = os.path.join(REPO, 'roles', 'prometheus', 'templates', 'rules')
RULE_NAMES = sorted(os.path.basename(path)[:-len('.j2')] for path in glob.glob(os.path.join(RULE_TEMPLATES, 'cerniq-*.yml.j2')))
DASHBOARD_NAMES = ['etapa1-overview.grafana.json', 'etapa1-overview.signoz.json']
_DEFAULTS = {}


def render(rules_dir=None, dashboards_dir=None, extra_vars=None, inventory=None):
    """Render the rules into ``rules_dir`` and/or the dashboards into ``dashboards_dir``."""
    variables = dict(extra_vars or {})
    if rules_dir:
        variables['prometheus_rules_render_dir'] = str(rules_dir)
    if dashboards_dir:
        variables['dashboards_render_dir'] = str(dashboards_dir)
    result = run_playbook(os.path.join(REPO, 'playbooks', 'render_monitoring.yml'), extra_vars=variables,
                          inventory=inventory)
    if result.returncode != 0:
        raise AssertionError('rendering the rule and dashboard templates failed:\n%s' % result.stdout[-4000:])
    return result


def render_rules(dest, extra_vars=None, inventory=None):
    """Render every shipped rule template into ``dest``; returns the rendered file paths (name order)."""
    render(rules_dir=dest, extra_vars=extra_vars, inventory=inventory)
    return [os.path.join(str(dest), name) for name in RULE_NAMES]


def _defaults():
    if 'dir' not in _DEFAULTS:
        path = tempfile.mkdtemp(prefix='cerniq-rendered-')
        atexit.register(shutil.rmtree, path, True)
        render(rules_dir=os.path.join(path, 'rendered'), dashboards_dir=os.path.join(path, 'dashboards'))
        _DEFAULTS['dir'] = path
    return _DEFAULTS['dir']


def default_rules_dir():
    """``<temp>/rendered``: the rule files rendered with the defaults (once per process). Its parent is
    where a copy of a tests/rules/*.test.yml runs, as their ``rule_files`` are ``rendered/<name>``."""
    return os.path.join(_defaults(), 'rendered')


def default_rule_files():
    return [os.path.join(default_rules_dir(), name) for name in RULE_NAMES]


def default_dashboards_dir():
    """The shipped dashboards rendered with the defaults (once per process)."""
    return os.path.join(_defaults(), 'dashboards')
