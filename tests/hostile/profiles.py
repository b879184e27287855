"""Hypothesis profiles and example budgets of the hostile layer (see conftest.py for the knobs).

- ``cerniq-ci`` (default): derandomized - the same examples on every run (a fixed seed), no example
  database - and each test runs its own bounded number of examples, so ``make test`` stays short.
- ``cerniq-hunt``: random examples (``--hypothesis-seed=N`` replays one hunt); failures are kept in an
  example database under /tmp and replayed first on the next hunt.
"""

import os
import tempfile

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

# Every example runs a real module process against real servers: shrinking a failure would take many
# minutes, so the first failing example is reported as drawn (CERNIQ_HOSTILE_SHRINK=1 shrinks it).
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if os.environ.get('CERNIQ_HOSTILE_SHRINK')
                                                          else [])
_COMMON = dict(deadline=None, print_blob=True, report_multiple_bugs=False, phases=PHASES,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
settings.register_profile('cerniq-ci', derandomize=True, database=None, **_COMMON)
settings.register_profile('cerniq-hunt', derandomize=False, database=DirectoryBasedExampleDatabase(
    os.path.join(tempfile.gettempdir(), 'cerniq-hostile-examples')), **_COMMON)
settings.load_profile('cerniq-ci')


def select_profile(seed_given):
    hunting = seed_given or os.environ.get('CERNIQ_HOSTILE_PROFILE') == 'hunt'
    settings.load_profile('cerniq-hunt' if hunting else 'cerniq-ci')


def budget(examples):
    """``settings`` for a test that runs ``examples`` examples in CI, scaled by ``CERNIQ_HOSTILE_SCALE``
    or replaced by ``CERNIQ_HOSTILE_EXAMPLES``."""
    fixed = int(os.environ.get('CERNIQ_HOSTILE_EXAMPLES') or 0)
    scale = float(os.environ.get('CERNIQ_HOSTILE_SCALE') or 1)
    return settings(settings.default, max_examples=fixed or max(1, int(round(examples * scale))))
