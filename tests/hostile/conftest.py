"""The hostile-input layer: its Hypothesis profile and the throwaway servers it corrupts.

Profiles (tests/hostile/profiles.py): ``cerniq-ci`` by default (derandomized: a fixed seed, bounded
examples per test); ``cerniq-hunt`` (random) with ``--hypothesis-seed=N`` or ``CERNIQ_HOSTILE_PROFILE=hunt``.

Knobs: ``CERNIQ_HOSTILE_SCALE=10`` multiplies every test's example count (a long local hunt);
``CERNIQ_HOSTILE_EXAMPLES=N`` sets it to N for every test.

    .venv/bin/python -m pytest tests/hostile -p no:cacheprovider                        # CI
    CERNIQ_HOSTILE_SCALE=10 .venv/bin/python -m pytest tests/hostile --hypothesis-seed=7  # hunt
"""

import os
import subprocess

import pytest

from tests.hostile.profiles import select_profile


def pytest_configure(config):
    select_profile(config.getoption('hypothesis_seed', None) is not None)


@pytest.fixture(scope='session')
def pg_workspace(pg_server):
    from tests.hostile.harness import PgWorkspace
    workspace = PgWorkspace(pg_server)
    yield workspace
    workspace.close()


@pytest.fixture(scope='session')
def redis_workspace(redis_server):
    from tests.hostile.harness import RedisWorkspace
    workspace = RedisWorkspace(redis_server)
    yield workspace
    workspace.close()


@pytest.fixture(scope='session')
def api_standin():
    from tests.hostile.api import ApiStandIn
    stand_in = ApiStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture(scope='session')
def backups(pg_workspace, tmp_path_factory):
    """A directory of backups of the CERNIQ template: a custom dump, a plain SQL dump, damaged copies."""
    from tests.hostile.pg_states import CERNIQ, TEMPLATES
    pg_workspace.template(CERNIQ, TEMPLATES[CERNIQ])
    server = pg_workspace.server
    root = tmp_path_factory.mktemp('hostile-backups')
    env = dict(os.environ, PGPASSWORD=server.params(superuser=True)['login_password'])
    good = root / 'good' / 'cerniq.dump'
    good.parent.mkdir()
    subprocess.run([os.path.join(server.bindir, 'pg_dump'), '-h', '127.0.0.1', '-p', str(server.port), '-U',
                    'postgres', '-F', 'c', '-f', str(good), CERNIQ], check=True, env=env)
    plain = root / 'plain' / 'cerniq.sql'
    plain.parent.mkdir()
    subprocess.run([os.path.join(server.bindir, 'pg_dump'), '-h', '127.0.0.1', '-p', str(server.port), '-U',
                    'postgres', '-F', 'p', '-f', str(plain), CERNIQ], check=True, env=env)
    damaged = root / 'damaged' / 'cerniq.dump'
    damaged.parent.mkdir()
    damaged.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 3])
    empty = root / 'empty'
    empty.mkdir()
    (root / 'garbage').mkdir()
    (root / 'garbage' / 'x.dump').write_bytes(b'\x00\xffnot a dump\n')
    (root / 'metrics').mkdir()
    return root
