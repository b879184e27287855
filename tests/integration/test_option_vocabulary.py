"""docs/option_vocabulary.md is true for every module, as ``ansible-doc --json`` shows them.

The Options table names, for each shared idea, the option, its kind and the modules that have it: each
row must match the modules exactly; a duration is a string whose default (when there is one) is a
duration with a unit; an option whose name reads as a duration must be in the table; the retired names
exist in no module; an ``*_info`` module has no ``state`` and full check mode.
"""

import glob
import json
import os
import re
import subprocess
import tempfile

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.durations import parse_duration
from cerniq_testkit.ansible_run import REPO, VENV_BIN

DOC = os.path.join(REPO, 'docs', 'option_vocabulary.md')
# Names that read like durations but are points in time.
TIMESTAMPS = {'start', 'end', 'starts_at', 'ends_at', 'mitigated_at', 'reference_time', 'cutoff'}
LOOKS_LIKE_DURATION = re.compile(r'timeout|_after$|_within$|_budget$|_time$|^lookback$|^step$|^period$|^duration$'
                                 r'|older_than|max_age|stuck_for|idle')


def _table(heading):
    """Rows of the Markdown table under ``## heading`` as lists of cells (backquotes removed)."""
    text = open(DOC).read().split('## %s\n' % heading, 1)[1].split('\n## ', 1)[0]
    rows = [line for line in text.splitlines() if line.startswith('|')][2:]
    return [[cell.strip().strip('`') for cell in row.strip('|').split('|')] for row in rows]


@pytest.fixture(scope='module')
def docs():
    """{module: its ansible-doc --json doc} for every module of the collection."""
    modules = sorted(os.path.splitext(os.path.basename(p))[0]
                     for p in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py')))
    root = tempfile.mkdtemp(prefix='cerniq-vocabulary-')
    os.makedirs(os.path.join(root, 'ansible_collections', 'cerniq'))
    os.symlink(REPO, os.path.join(root, 'ansible_collections', 'cerniq', 'ops'))
    out = subprocess.run([os.path.join(VENV_BIN, 'ansible-doc'), '--json'] + ['cerniq.ops.%s' % m for m in modules],
                         env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=root), check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    found = dict((fqcn.split('.')[-1], value['doc']) for fqcn, value in json.loads(out).items())
    assert sorted(found) == modules
    return found


def test_every_row_matches_the_modules(docs):
    rows = _table('Options')
    assert len(rows) >= 20
    for option, kind, _meaning, listed in rows:
        having = sorted(m for m, doc in docs.items() if option in doc['options'])
        assert having == sorted(m.strip() for m in listed.split(',')), (option, having)
        for module in having:
            spec = docs[module]['options'][option]
            assert spec.get('type', 'str') == ('str' if kind == 'duration' else kind), (module, option, spec)
            if kind == 'duration' and spec.get('default') is not None:
                default = str(spec['default'])
                assert not re.match(r'^\s*\d+(\.\d+)?\s*$', default), (module, option, default)
                assert parse_duration(default, option) >= 0


def test_every_duration_option_is_in_the_table(docs):
    durations = set(row[0] for row in _table('Options') if row[1] == 'duration')
    named = set(option for doc in docs.values() for option in doc['options']
                if LOOKS_LIKE_DURATION.search(option) and option not in TIMESTAMPS)
    assert named <= durations, sorted(named - durations)


def test_retired_names_exist_nowhere(docs):
    retired = set()
    for names, _now in _table('Retired names (before 1.0.0)'):
        retired.update(re.findall(r'`?([a-z_]+)`?(?:\s*\([^)]*\))?', names.replace('`', ' ')))
    retired = set(name for name in retired if '_' in name or name in ('action', 'days'))
    assert {'action', 'window_minutes', 'max_runtime', 'max_companies', 'days'} <= retired
    for module, doc in docs.items():
        assert not retired & set(doc['options']), (module, sorted(retired & set(doc['options'])))


def test_info_modules_read_only(docs):
    infos = [m for m in docs if m.endswith('_info')]
    assert len(infos) >= 8
    for module in infos:
        assert 'state' not in docs[module]['options'], module
        assert docs[module]['attributes']['check_mode']['support'] == 'full', module
