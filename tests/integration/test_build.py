"""The built collection: only what users need, and every module documented by ansible-doc."""

import glob
import json
import os
import subprocess
import sys
import tarfile

import pytest

from cerniq_testkit.ansible_run import REPO

BIN = os.path.dirname(sys.executable)
FORBIDDEN_TOP = ('tests/', 'cerniq_testkit/', 'molecule/', 'extensions/', 'benchmarks/', '.venv', 'scripts/', '.ci/',
                 '.git/')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp('build')
    subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(out), REPO],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tarball = glob.glob(str(out / 'cerniq-ops-*.tar.gz'))[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    dest = tmp_path_factory.mktemp('collections')
    # Only the empty path is configured, or galaxy finds the checkout (test runner's collection
    # path) and installs nothing.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest))
    subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline', '--force',
                    '-p', str(dest), tarball], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert os.path.exists(os.path.join(str(dest), 'ansible_collections', 'cerniq', 'ops', 'MANIFEST.json'))
    return names, dest


def test_tarball_leaves_out_tests_molecule_benchmarks_and_venvs(installed):
    names, _dest = installed
    offending = [name for name in names if name.startswith(FORBIDDEN_TOP) or '__pycache__' in name]
    assert offending == []
    assert 'MANIFEST.json' in names
    assert any(name.startswith('plugins/modules/') for name in names)


def _modules():
    return sorted(os.path.splitext(os.path.basename(path))[0]
                  for path in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py'))
                  if not os.path.basename(path).startswith('_'))


def test_every_module_renders_in_ansible_doc_from_the_installed_tarball(installed):
    """Text and JSON docs of every module, each from one ansible-doc run for all modules (its start-up
    is most of its cost): the text is split at each module's ``> MODULE`` header."""
    _names, dest = installed
    modules = ['cerniq.ops.%s' % module for module in _modules()]
    assert modules, 'the collection ships no module'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_NOCOLOR='1')
    text = subprocess.run([os.path.join(BIN, 'ansible-doc')] + modules, env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert text.returncode == 0, text.stdout
    pages = dict((page.split(None, 1)[0], page) for page in text.stdout.split('> MODULE ')[1:])
    assert sorted(pages) == modules, text.stdout[:2000]
    for fqcn, page in pages.items():
        assert 'EXAMPLES' in page and 'RETURN VALUES' in page, fqcn
    data = json.loads(subprocess.run([os.path.join(BIN, 'ansible-doc'), '--json'] + modules, env=env, check=True,
                                     stdout=subprocess.PIPE, text=True).stdout)
    assert sorted(data) == modules
    for fqcn in modules:
        doc = data[fqcn]['doc']
        assert doc['short_description'] and doc['options'], fqcn
