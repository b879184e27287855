"""Hostile input for the Redis modules: bullmq_queue(_info), circuit_breaker(_info), redis_keys(_info).

Each example seeds a corrupt state into a real, emptied Redis (jobs whose key is a string, a list or
missing, non-numeric counters, locked jobs, duplicate ids, queue keys of the wrong type, breakers of the
wrong type, keys with odd names in two databases), draws the module's options from its argument spec,
runs the real module (check mode or not) and asks the oracle: a clear one-line failure or a correct
result; nothing changed by a failed or check-mode run; nothing lost or duplicated by a successful one.
"""

from hypothesis import assume, given, strategies as st

from tests.hostile import known
from tests.hostile.argspec import module_args
from tests.hostile.harness import run_example
from tests.hostile.invariants import INVARIANTS, prepare_redis
from tests.hostile.profiles import budget
from tests.hostile.redis_states import REDIS_CONNECTION_HOSTILE, bullmq_states, breaker_states, plain_keys


def hostile_run(workspace, data, module, state, hints):
    """Draw the options and check mode, seed ``state`` into an emptied Redis, run ``module``, judge it."""
    params, client = workspace.fresh()
    args = data.draw(module_args(module, hints, fixed=params, connection_hostile=REDIS_CONNECTION_HOSTILE),
                     label='args')
    check_mode = data.draw(st.booleans(), label='check_mode')
    assume(not known.matches(module, args, state, check_mode))
    snapshot = prepare_redis(client, module, args, state)
    run_example(module, args, check_mode, state, snapshot).assert_ok(INVARIANTS[module])


@budget(30)
@given(data=st.data())
def test_bullmq_queue(redis_workspace, data):
    state = data.draw(bullmq_states(), label='state')
    queues = state['queues']
    hostile_run(redis_workspace, data, 'bullmq_queue', state, dict(
        name=st.sampled_from([q['name'] for q in queues] * 3 + ['missing']),
        prefix=st.sampled_from(sorted(set(q['prefix'] for q in queues))),
        batch_size=st.integers(1, 4), limit=st.one_of(st.none(), st.integers(1, 5)),
        max_stalled_count=st.integers(0, 2), older_than=st.sampled_from([None, None, '1s', '1h', '0s']),
        sample_size=st.integers(0, 5)))


@budget(15)
@given(data=st.data())
def test_bullmq_queue_info(redis_workspace, data):
    state = data.draw(bullmq_states(), label='state')
    names = [q['name'] for q in state['queues']]
    hostile_run(redis_workspace, data, 'bullmq_queue_info', state, dict(
        names=st.lists(st.sampled_from(names + ['missing']), max_size=3),
        prefix=st.sampled_from(sorted(set(q['prefix'] for q in state['queues'])) + ['nope']),
        batch_size=st.integers(1, 4), sample_size=st.integers(0, 5)))


@budget(25)
@given(data=st.data())
def test_circuit_breaker(redis_workspace, data):
    state = data.draw(breaker_states(), label='state')
    sources = [b['source'] for b in state['breakers']]
    hostile_run(redis_workspace, data, 'circuit_breaker', state, dict(
        sources=st.lists(st.sampled_from(sources + ['absent']), min_size=1, max_size=3),
        open_values=st.sampled_from([['OPEN'], ['OPEN', 'HALF_OPEN'], ['open']]), state=st.just('closed')))


@budget(10)
@given(data=st.data())
def test_circuit_breaker_info(redis_workspace, data):
    state = data.draw(breaker_states(), label='state')
    sources = [b['source'] for b in state['breakers']]
    hostile_run(redis_workspace, data, 'circuit_breaker_info', state, dict(
        sources=st.lists(st.sampled_from(sources + ['absent']), min_size=1, max_size=3),
        open_values=st.sampled_from([['OPEN'], ['OPEN', 'HALF_OPEN'], ['open']])))


PATTERNS = ['a', 'zz:*', 'cache:*', 'bull:q1:*', 'sess:{u1}:*', 'ț*', '[a-z]*', 'nomatch*', '\\*', '*', '?*', '*?',
            '**', '[^\x00]*', '*:*', 'bull:*', '[!a]*', '?', 'alway?', '\xff*']


@budget(30)
@given(data=st.data())
def test_redis_keys(redis_workspace, data):
    state = dict(plain=data.draw(plain_keys(), label='keys'), queues=[])
    hostile_run(redis_workspace, data, 'redis_keys', state, dict(
        patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3),
        max_keys=st.one_of(st.none(), st.integers(0, 10)), scan_count=st.integers(1, 20),
        batch_size=st.integers(1, 5), sample_size=st.integers(0, 5),
        min_idle_time=st.sampled_from([None, None, '0s', '5s', '1500ms'])))


@budget(10)
@given(data=st.data())
def test_redis_keys_info(redis_workspace, data):
    state = dict(plain=data.draw(plain_keys(), label='keys'), queues=[])
    hostile_run(redis_workspace, data, 'redis_keys_info', state, dict(
        patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3), scan_count=st.integers(1, 20),
        sample_size=st.integers(0, 5), min_idle_time=st.sampled_from([None, None, '0s', '5s', '1500ms'])))
