"""The hostile-input layer: its Hypothesis profile and the throwaway servers it corrupts.

Profiles (tests/hostile/profiles.py): ``cerniq-ci`` by default (derandomized: a fixed seed, bounded
examples per test); ``cerniq-hunt`` (random) with ``--hypothesis-seed=N`` or ``CERNIQ_HOSTILE_PROFILE=hunt``.

Knobs: ``CERNIQ_HOSTILE_SCALE=10`` multiplies every test's example count (a long local hunt);
``CERNIQ_HOSTILE_EXAMPLES=N`` sets it to N for every test.

    .venv/bin/python -m pytest tests/hostile -p no:cacheprovider                        # CI
    CERNIQ_HOSTILE_SCALE=10 .venv/bin/python -m pytest tests/hostile --hypothesis-seed=7  # hunt
"""

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
