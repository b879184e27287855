"""meta/runtime.yml action groups cover exactly the modules that take each backend's connection options."""

import glob
import os

import yaml

from cerniq_testkit.ansible_run import REPO


def _modules_using(function):
    found = set()
    for path in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py')):
        with open(path) as handle:
            if function in handle.read():
                found.add(os.path.splitext(os.path.basename(path))[0])
    return found


def test_action_groups_match_connection_options():
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as handle:
        groups = yaml.safe_load(handle)['action_groups']
    assert set(groups['postgres']) == _modules_using('postgres_argument_spec()')
    assert set(groups['redis']) == _modules_using('redis_argument_spec()')
    assert set(groups['alertmanager']) == _modules_using('ALERTMANAGER_ARGUMENT_SPEC')


def test_galaxy_metadata():
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        galaxy = yaml.safe_load(handle)
    assert (galaxy['namespace'], galaxy['name']) == ('cerniq', 'ops')
    for excluded in ('tests', 'molecule', 'benchmarks', '.venv'):
        assert excluded in galaxy['build_ignore']


def test_the_galaxy_version_is_a_released_changelog_version():
    """antsibull-changelog lint passes, and galaxy.yml's version is a release in changelog.yaml and CHANGELOG.rst."""
    import subprocess
    import sys
    lint = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'antsibull-changelog'), 'lint'],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        version = yaml.safe_load(handle)['version']
    with open(os.path.join(REPO, 'changelogs', 'changelog.yaml')) as handle:
        releases = yaml.safe_load(handle)['releases']
    assert version in releases, 'galaxy.yml says %s, changelog.yaml releases %s' % (version, sorted(releases))
    assert releases[version]['changes'].get('release_summary')
    with open(os.path.join(REPO, 'CHANGELOG.rst')) as handle:
        assert '\nv%s\n' % version in handle.read()
