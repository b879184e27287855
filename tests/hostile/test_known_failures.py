"""The failures the hostile layer found outside this branch's modules, one concrete example each.

Open entries of tests/hostile/known.py are ``xfail(strict=True)``: when the fix of the named branch is
merged the example passes, the strict xfail fails, and the lead sets the entry's ``open=False`` - the
example then stays here as a regression test and the property tests draw those inputs again.
"""

import pytest

from tests.hostile import known
from tests.hostile.harness import run_example
from tests.hostile.invariants import INVARIANTS, snapshotter_for
from cerniq_testkit.results import documented_keys


def _param(entry):
    marks = [pytest.mark.xfail(strict=True, reason=entry.reason)] if entry.open else []
    return pytest.param(entry, id=entry.key, marks=marks)


@pytest.mark.parametrize('entry', [_param(entry) for entry in known.KNOWN])
def test_known_failure(entry, request):
    case = entry.example
    fixed, snapshot = snapshotter_for(request, case)
    args = dict(fixed, **case['args'])
    example = run_example(case['module'], args, case['check_mode'], case['state'], snapshot)
    example.assert_ok(INVARIANTS[case['module']])


def test_undocumented_result_keys_are_listed_only_while_undocumented():
    """known.UNDOCUMENTED lets the oracle ignore result keys a module does not document yet; an entry whose
    keys RETURN now documents must leave the list (else the oracle would keep ignoring them)."""
    documented = dict((module, sorted(keys & documented_keys(module))) for module, keys in known.UNDOCUMENTED.items())
    assert not any(documented.values()), 'documented now, remove from known.UNDOCUMENTED: %s' % documented
