"""Every module of plugins/modules has a property test in this layer, and every option of every module can be
drawn (its spec loads from the module itself)."""

import glob
import os
import re

import pytest

from tests.hostile.argspec import documented_bounds, load_spec
from tests.hostile.invariants import INVARIANTS
from cerniq_testkit.ansible_run import REPO

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = sorted(os.path.splitext(os.path.basename(path))[0]
                 for path in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py')))


def _property_tests():
    names = set()
    for path in glob.glob(os.path.join(HERE, 'test_*_modules.py')):
        with open(path) as handle:
            names.update(re.findall(r'^def test_(\w+)\(', handle.read(), re.M))
    return names


@pytest.mark.parametrize('module', MODULES)
def test_module_has_a_hostile_property_test(module):
    assert module in _property_tests(), 'no hostile property test for %s' % module
    assert module in INVARIANTS, 'no invariant (nothing lost or duplicated) for %s' % module
    spec = load_spec(module)['argument_spec']
    assert spec and all(isinstance(option, dict) for option in spec.values())


def test_documented_bounds_are_read():
    assert documented_bounds('quality_scores')['batch_size'] == (1, 10000)
    assert documented_bounds('approval_tasks')['limit'] == (1, 1000000)
