"""scripts/bootstrap.sh's virtualenvs, for real: built in place or in the cache and linked, reused by
another clone, rebuilt when the requirements change, and a second bootstrap that finds them up to date
succeeds. A copy of the script runs on empty requirement files (the venvs hold pip only), the packages'
and container checks as they are on this machine (present) or skipped (the container check).
"""

import os
import shutil
import subprocess

from cerniq_testkit.ansible_run import REPO

REQUIREMENTS = ('requirements.txt', 'requirements-dev.txt', 'constraints.txt', 'requirements-bullmq-v5.txt')


def _clone(root):
    os.makedirs(os.path.join(root, 'scripts'))
    shutil.copy(os.path.join(REPO, 'scripts', 'bootstrap.sh'), os.path.join(root, 'scripts'))
    for name in REQUIREMENTS:
        open(os.path.join(root, name), 'w').close()
    return root


def _bootstrap(root, cache):
    env = dict(os.environ, CERNIQ_SKIP_CONTAINER_CHECK='1', CERNIQ_VENV_CACHE=cache)
    for name in ('CERNIQ_VENV', 'CERNIQ_VENV_BULLMQ5', 'VIRTUAL_ENV'):
        env.pop(name, None)
    proc = subprocess.run([os.path.join(root, 'scripts', 'bootstrap.sh')], cwd=root, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout
    return [line for line in proc.stdout.splitlines() if line.startswith('[bootstrap]')]


def test_cached_venvs_are_shared_by_clones_and_keyed_by_the_requirements(tmp_path):
    cache = str(tmp_path / 'cache')
    one, two = _clone(str(tmp_path / 'one')), _clone(str(tmp_path / 'two'))
    built = _bootstrap(one, cache)
    assert sum(line.startswith('[bootstrap] building virtualenv %s/' % cache) for line in built) == 2, built
    reused = _bootstrap(two, cache)
    assert not any('building' in line for line in reused), reused
    for name in ('.venv', '.venv-bullmq5'):
        assert os.path.islink(os.path.join(two, name))
        assert os.readlink(os.path.join(two, name)) == os.readlink(os.path.join(one, name))
    subprocess.run([os.path.join(two, '.venv', 'bin', 'python'), '-c', 'import pip'], check=True)
    assert '[bootstrap] virtualenv .venv: up to date' in _bootstrap(one, cache)
    # A changed requirement file: a venv of its own for that clone; the other clone keeps its link.
    with open(os.path.join(two, 'requirements.txt'), 'w') as handle:
        handle.write('# changed\n')
    changed = _bootstrap(two, cache)
    assert any(line.startswith('[bootstrap] building virtualenv %s/venv-' % cache) for line in changed), changed
    assert os.readlink(os.path.join(two, '.venv')) != os.readlink(os.path.join(one, '.venv'))
    assert os.readlink(os.path.join(two, '.venv-bullmq5')) == os.readlink(os.path.join(one, '.venv-bullmq5'))
    # A clone whose venv was built in place by an earlier bootstrap moves to the cached one.
    three = _clone(str(tmp_path / 'three'))
    assert '[bootstrap] building virtualenv .venv' in _bootstrap(three, '')
    assert not os.path.islink(os.path.join(three, '.venv'))
    # same requirements as `one`: up to date in place, kept (and the bootstrap goes on to the end)
    assert _bootstrap(three, cache)[-3:] == ['[bootstrap] virtualenv .venv: up to date',
                                             '[bootstrap] virtualenv .venv-bullmq5: up to date',
                                             '[bootstrap] ready: .venv']
    assert not os.path.islink(os.path.join(three, '.venv'))
    with open(os.path.join(three, 'constraints.txt'), 'w') as handle:
        handle.write('# changed\n')
    _bootstrap(three, cache)
    assert os.path.islink(os.path.join(three, '.venv'))
