"""The prometheus role's alert rules as the role renders them (roles/prometheus/templates/rules/*.j2).

``render_rules`` runs playbooks/render_rules.yml (the role's own rendering, through Ansible) into a
directory, with the settings' defaults or with an inventory / extra vars; ``default_rules_dir``
renders the defaults once per test process. Tests read rules from there, never from the templates.
"""

import atexit
import glob
import os
import shutil
import tempfile

from tests.support.ansible_run import REPO, run_playbook

TEMPLATE_DIR = os.path.join(REPO, 'roles', 'prometheus', 'templates', 'rules')
RULE_NAMES = sorted(os.path.basename(path)[:-len('.j2')] for path in glob.glob(os.path.join(TEMPLATE_DIR, 'cerniq-*.yml.j2')))
_DEFAULTS = {}


def render_rules(dest, extra_vars=None, inventory=None):
    """Render every shipped rule template into ``dest``; returns the rendered file paths (name order)."""
    variables = dict(extra_vars or {}, prometheus_rules_render_dir=str(dest))
    result = run_playbook(os.path.join(REPO, 'playbooks', 'render_rules.yml'), extra_vars=variables, inventory=inventory)
    if result.returncode != 0:
        raise AssertionError('rendering the rule templates failed:\n%s' % result.stdout[-4000:])
    return [os.path.join(str(dest), name) for name in RULE_NAMES]


def default_rules_dir():
    """``<temp>/rendered``: the rule files rendered with the defaults (once per process). Its parent is
    where a copy of a tests/rules/*.test.yml runs, as their ``rule_files`` are ``rendered/<name>``."""
    if 'dir' not in _DEFAULTS:
        path = tempfile.mkdtemp(prefix='cerniq-rules-')
        atexit.register(shutil.rmtree, path, True)
        render_rules(os.path.join(path, 'rendered'))
        _DEFAULTS['dir'] = os.path.join(path, 'rendered')
    return _DEFAULTS['dir']


def default_rule_files():
    return [os.path.join(default_rules_dir(), name) for name in RULE_NAMES]
