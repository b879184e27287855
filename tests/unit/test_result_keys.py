"""No module returns a result key that Ansible interprets with another meaning (issue 13, defect 4).

Static half: the keys each module documents in RETURN and the keys its ``main`` puts into the result it passes
to ``exit_json``/``fail_json`` (keywords, ``result = dict(...)``, ``result['key'] = ...``). The hostile layer
(tests/hostile) checks the real results of every module with ``reserved_key_misuse`` at run time, and that
every returned key is documented.
"""

import ast
import glob
import os

import pytest

from cerniq_testkit.ansible_run import REPO
from cerniq_testkit.results import ANSIBLE_MEANING_KEYS, RESERVED_RESULT_KEYS, documented_keys, reserved_key_misuse

MODULES = sorted(os.path.splitext(os.path.basename(p))[0]
                 for p in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py')))
# Results of other helpers' modules still to be fixed (issue 13 defect 4 class): the lead removes an entry
# when its fix is merged.
OPEN = {}


def _module_tree(name):
    with open(os.path.join(REPO, 'plugins', 'modules', name + '.py')) as handle:
        return ast.parse(handle.read())


def _result_calls(tree):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ('exit_json', 'fail_json')]


def built_keys(name, tree=None):
    """Keys the module's own code (or ``tree``) puts into what it passes to exit_json/fail_json."""
    tree = tree or _module_tree(name)
    keys, spread = set(), set()
    for call in _result_calls(tree):
        for keyword in call.keywords:
            if keyword.arg is None:
                if isinstance(keyword.value, ast.Name):
                    spread.add(keyword.value.id)
            elif not (call.func.attr == 'fail_json' and keyword.arg == 'exception'):
                keys.add(keyword.arg)   # fail_json(exception=...) is Ansible's own meaning (missing library)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in spread:
                    keys.update(_literal_keys(node.value))
                if isinstance(target, ast.Subscript) and getattr(target.value, 'id', None) in spread \
                        and isinstance(target.slice, ast.Constant):
                    keys.add(target.slice.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and getattr(node.func.value, 'id', None) in spread and node.func.attr in ('update', 'setdefault'):
            keys.update(k.arg for k in node.keywords if k.arg)
            if node.func.attr == 'setdefault' and node.args and isinstance(node.args[0], ast.Constant):
                keys.add(node.args[0].value)
    return keys


def _literal_keys(value):
    if isinstance(value, ast.Call) and getattr(value.func, 'id', None) == 'dict':
        return set(k.arg for k in value.keywords if k.arg)
    if isinstance(value, ast.Dict):
        return set(k.value for k in value.keys if isinstance(k, ast.Constant))
    return set()


def test_every_module_is_checked():
    assert len(MODULES) >= 16 and {'approval_tasks', 'import_batch', 'quality_scores'} <= set(MODULES)


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=OPEN[name])) if name in OPEN else name
    for name in MODULES])
def test_no_reserved_result_key(name):
    documented = documented_keys(name) & RESERVED_RESULT_KEYS
    assert not documented, '%s documents reserved result keys in RETURN: %s' % (name, sorted(documented))
    built = built_keys(name) & RESERVED_RESULT_KEYS - ANSIBLE_MEANING_KEYS
    assert not built, '%s puts reserved keys into its result: %s' % (name, sorted(built))


def test_the_checks_see_a_reserved_key():
    """The checks above find what they look for (so an empty finding means something)."""
    assert {'skipped', 'failed'} <= RESERVED_RESULT_KEYS
    assert reserved_key_misuse(dict(changed=True, skipped=[1])) == ["returns 'skipped'"]
    assert reserved_key_misuse(dict(changed=1, failed=[])) == ['changed is 1, not a bool',
                                                               "failed is [] (only fail_json sets it, to true)"]
    # pg_maintenance returned 'results' before 1.0.0, the way this source still does:
    old = ast.parse("def main():\n    result = dict(changed=True, results=[])\n    module.exit_json(**result)\n")
    assert built_keys('pg_maintenance', old) & RESERVED_RESULT_KEYS - ANSIBLE_MEANING_KEYS == {'results'}
