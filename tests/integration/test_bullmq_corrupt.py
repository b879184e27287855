"""Corrupt jobs and corrupt queue state never cost a job (issue 13, defects 1 and 12).

A Lua script is not a transaction: writes before a failing command stay. Every script that moves
jobs must therefore check each job before it leaves its source, so that after any error every job
is in exactly one list or set; a corrupt job stays where it was and is reported, the valid jobs of
the batch still move, and check mode reports the same without writing. Real Redis; real BullMQ
workers where what matters is that BullMQ still runs the jobs we moved.
"""

import collections

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.bullmq import BullMQError, Queue
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.bullmq_helpers import PY_CURRENT, finish, orphan_active_jobs, run, snapshot, start_worker

LISTS = ('wait', 'paused', 'active')
SETS = ('prioritized', 'delayed', 'completed', 'failed', 'waiting-children')


def _where(client, base):
    """Every job id of the queue with the lists and sets holding it."""
    places = collections.defaultdict(list)
    base = base.decode() if isinstance(base, bytes) else base
    for kind in LISTS:
        for job_id in client.lrange(base + kind, 0, -1):
            places[job_id].append(kind)
    for kind in SETS:
        for job_id in client.zrange(base + kind, 0, -1):
            places[job_id].append(kind)
    return dict(places)


def _issue_queue(client, corrupt):
    """The issue's reproduction: prefix cq, queue q3, jobs 1 2 3 in active, job 2 corrupt."""
    client.hset('cq:q3:meta', 'version', 'bullmq:5.56.0')
    for job_id in '123':
        client.hset('cq:q3:' + job_id, mapping={'data': '{}', 'timestamp': 1, 'processedOn': 1, 'name': job_id})
    corrupt(client, 'cq:q3:2')
    client.lpush('cq:q3:active', 1, 2, 3)


CORRUPT_ACTIVE_JOBS = {
    'job key is a string': (lambda c, key: (c.delete(key), c.set(key, 'x')),
                            'job key is a string, not a hash'),
    'stc not a number': (lambda c, key: c.hset(key, 'stc', 'abc'),
                         "field stc is 'abc', not an integer HINCRBY can increment"),
    'stc would overflow': (lambda c, key: c.hset(key, 'stc', '9223372036854775807'),
                           "field stc is '9223372036854775807', not an integer HINCRBY can increment"),
    'job hash missing': (lambda c, key: c.delete(key), 'job hash missing'),
}


@pytest.mark.parametrize('kind', sorted(CORRUPT_ACTIVE_JOBS))
def test_repair_moves_the_valid_jobs_and_leaves_a_corrupt_one_in_active(redis_client, redis_params, kind):
    corrupt, reason = CORRUPT_ACTIVE_JOBS[kind]
    _issue_queue(redis_client, corrupt)
    args = dict(redis_params, prefix='cq', name='q3', state='repaired')
    before = snapshot(redis_client)
    checked = run_module('bullmq_queue', args, check_mode=True)
    assert not checked.failed, checked
    assert snapshot(redis_client) == before
    result = run_module('bullmq_queue', args)
    assert not result.failed, result
    for reported in (checked, result):
        assert reported['changed'] is True and reported['moved'] == 2
        assert reported['corrupt_count'] == 1 and reported['corrupt_left_in'] == 'active'
        assert reported['corrupt_jobs'] == [{'id': '2', 'reason': reason}]
        assert 'left in active' in reported['warnings'][0]['event']['msg']
    assert checked['after'] == result['after'] == dict(result['before'], active=1, wait=2)
    assert _where(redis_client, b'cq:q3:') == {b'1': ['wait'], b'2': ['active'], b'3': ['wait']}
    assert redis_client.hget('cq:q3:1', 'stc') == b'1' and redis_client.hget('cq:q3:3', 'stc') == b'1'
    again = run_module('bullmq_queue', args)
    assert again['changed'] is False and again['moved'] == 0 and again['corrupt_count'] == 1


COUNTERS = ['0', '1', '-5', '-0', '007', '+5', ' 5', '5 ', '1e3', '5.0', '', 'abc', '9223372036854775806',
            '9223372036854775807', '-9223372036854775808', '-9223372036854775809', '18446744073709551615',
            '99999999999999999999']


def test_check_mode_judges_a_counter_exactly_as_hincrby_does(redis_client):
    """Check mode emulates HINCRBY's rule in Lua; the real run uses HINCRBY itself (through pcall, which
    writes nothing when it fails). Both must agree on every edge of Redis's integer parsing."""
    base = 'bull:q:'
    for n, value in enumerate(COUNTERS):
        redis_client.hset(base + str(n), mapping={'data': '{}', 'timestamp': 1, 'stc': value})
        redis_client.rpush(base + 'active', n)
    predicted = Queue(redis_client, 'q', batch_size=7).repair(max_stalled_count=10 ** 6, check_mode=True)
    result = Queue(redis_client, 'q', batch_size=7).repair(max_stalled_count=10 ** 6)
    assert predicted['corrupt_jobs'] == result['corrupt_jobs'] and predicted['moved'] == result['moved']
    refused = set(int(job['id']) for job in result['corrupt_jobs'])
    for n, value in enumerate(COUNTERS):
        redis_client.hset('probe', 'f', value)
        try:
            redis_client.hincrby('probe', 'f', 1)
            accepted = True
        except Exception:  # noqa: BLE001 - any refusal of HINCRBY
            accepted = False
        assert (n not in refused) == accepted, value


def test_real_worker_runs_the_repaired_jobs_around_a_corrupt_one(redis_server, redis_client, redis_params):
    queue = 'bronze:ingest:csv'
    base = ('bull:%s:' % queue).encode()
    run(PY_CURRENT, 'produce', redis_server.port, queue, '--count', 8)
    dead = orphan_active_jobs(PY_CURRENT, redis_server.port, queue, redis_client, 4)
    broken = dead[1]
    redis_client.hset(base + broken, 'stc', 'abc')
    queue_obj = Queue(redis_client, queue, batch_size=2)  # the corrupt job sits inside a batch
    predicted = queue_obj.repair(check_mode=True)
    result = queue_obj.repair()
    assert predicted['moved'] == result['moved'] == 3
    assert predicted['corrupt_jobs'] == result['corrupt_jobs'] == [
        {'id': broken.decode(), 'reason': "field stc is 'abc', not an integer HINCRBY can increment"}]
    assert redis_client.lrange(base + b'active', 0, -1) == [broken]
    finish(start_worker(PY_CURRENT, redis_server.port, queue, '--record', 'test:processed', '--until', 7,
                        '--seconds', 60))
    processed = redis_client.lrange('test:processed', 0, -1)
    assert sorted(processed) == sorted(set(processed)) and len(processed) == 7 and broken not in processed
    assert redis_client.zcard(base + b'completed') == 7
    assert _where(redis_client, base)[broken] == ['active']


def test_retry_leaves_a_corrupt_failed_job_in_failed_and_moves_the_others(redis_client, redis_params):
    """The issue's failed set {f1 hash, f2 string, f3 hash}: f2 was removed from failed and put nowhere."""
    redis_client.hset('cq:q3:meta', 'version', 'bullmq:5.56.0')
    for job_id in ('f1', 'f3'):
        redis_client.hset('cq:q3:' + job_id, mapping={'data': '{}', 'timestamp': 1, 'finishedOn': 1, 'name': 'x',
                                                      'failedReason': 'boom'})
    redis_client.set('cq:q3:f2', 'x')
    redis_client.zadd('cq:q3:failed', {'f1': 1, 'f2': 2, 'f3': 3})
    args = dict(redis_params, prefix='cq', name='q3', state='retried')
    before = snapshot(redis_client)
    checked = run_module('bullmq_queue', args, check_mode=True)
    assert snapshot(redis_client) == before
    result = run_module('bullmq_queue', args)
    assert not result.failed, result
    for reported in (checked, result):
        assert reported['changed'] is True and reported['moved'] == 2
        assert reported['corrupt_jobs'] == [{'id': 'f2', 'reason': 'job key is a string, not a hash'}]
        assert reported['corrupt_left_in'] == 'failed'
    assert checked['after'] == result['after'] == dict(result['before'], failed=1, wait=2)
    assert _where(redis_client, b'cq:q3:') == {b'f1': ['wait'], b'f2': ['failed'], b'f3': ['wait']}
    assert not redis_client.hexists('cq:q3:f1', 'failedReason')


def test_retry_with_real_failed_jobs_a_bad_priority_and_a_limit(redis_server, redis_client, redis_params):
    queue = 'silver:enrich:termene'
    base = ('bull:%s:' % queue).encode()
    run(PY_CURRENT, 'produce', redis_server.port, queue, '--count', 10)
    finish(start_worker(PY_CURRENT, redis_server.port, queue, '--fail', '--record', 'test:failing', '--until', 10))
    failed = redis_client.zrange(base + b'failed', 0, -1)
    redis_client.hset(base + failed[0], 'priority', 'abc')
    redis_client.hset(base + failed[2], 'priority', str(2 ** 21 + 1))
    args = dict(redis_params, name=queue, state='retried', limit=5, batch_size=2)
    checked = run_module('bullmq_queue', args, check_mode=True)
    result = run_module('bullmq_queue', args)
    for reported in (checked, result):
        assert reported['moved'] == 5 and reported['corrupt_count'] == 2
        assert [c['id'] for c in reported['corrupt_jobs']] == [failed[0].decode(), failed[2].decode()]
    assert result['corrupt_jobs'][0]['reason'] == "field priority is 'abc', not an integer from 0 to 2097152"
    assert checked['after'] == result['after']
    rest = run_module('bullmq_queue', dict(args, limit=None))
    assert rest['moved'] == 3 and rest['corrupt_count'] == 2 and rest['after']['failed'] == 2
    finish(start_worker(PY_CURRENT, redis_server.port, queue, '--record', 'test:processed', '--until', 8))
    assert redis_client.zcard(base + b'completed') == 8
    assert sorted(redis_client.zrange(base + b'failed', 0, -1)) == sorted([failed[0], failed[2]])


def test_promote_and_clean_leave_corrupt_jobs_in_their_set(redis_client, redis_params):
    base = 'bull:q:'
    redis_client.hset(base + 'meta', 'opts.maxLenEvents', 100)
    for n in range(6):
        redis_client.hset(base + 'd%d' % n, mapping={'data': '{}', 'timestamp': 1, 'delay': 5})
        redis_client.zadd(base + 'delayed', {'d%d' % n: n})
        redis_client.hset(base + 'c%d' % n, mapping={'data': '{}', 'timestamp': 1, 'finishedOn': 1})
        redis_client.zadd(base + 'completed', {'c%d' % n: n})
    redis_client.delete(base + 'd1', base + 'c1', base + 'c2')
    redis_client.set(base + 'd4', 'x')
    redis_client.set(base + 'c2', 'not a job')  # not a hash: not ours to delete
    promoted = run_module('bullmq_queue', dict(redis_params, name='q', state='promoted', batch_size=2))
    assert promoted['moved'] == 4 and promoted['corrupt_left_in'] == 'delayed'
    assert promoted['corrupt_jobs'] == [{'id': 'd1', 'reason': 'job hash missing'},
                                        {'id': 'd4', 'reason': 'job key is a string, not a hash'}]
    assert redis_client.zrange(base + 'delayed', 0, -1) == [b'd1', b'd4']
    checked = run_module('bullmq_queue', dict(redis_params, name='q', state='cleaned'), check_mode=True)
    cleaned = run_module('bullmq_queue', dict(redis_params, name='q', state='cleaned', batch_size=2))
    for reported in (checked, cleaned):
        assert reported['deleted'] == 5  # c1 had no hash left: it only leaves the set
        assert reported['corrupt_jobs'] == [{'id': 'c2', 'reason': 'job key is a string, not a hash'}]
    assert redis_client.zrange(base + 'completed', 0, -1) == [b'c2'] and redis_client.get(base + 'c2') == b'not a job'


def test_a_script_refuses_before_its_first_write(redis_client):
    """The key types are checked inside each script too (the queue may change between our check and
    the script): a wrong type is refused before any job leaves its list."""
    base = 'bull:q:'
    for job_id in ('a', 'b'):
        redis_client.hset(base + job_id, mapping={'data': '{}', 'timestamp': 1})
        redis_client.rpush(base + 'active', job_id)
    redis_client.hset(base + 'wait', 'not', 'a list')
    queue = Queue(redis_client, 'q')
    k = queue.keys
    keys = [k['active'], k['wait'], k['paused'], k['meta'], k['marker'], k['events'], k['repeat'], k['failed'],
            k['stalled']]
    before = snapshot(redis_client)
    with pytest.raises(BullMQError) as refused:
        queue._eval('REPAIR_STALLED', keys, [k.job_prefix, 1, 'stc', 'defer', 'v5', 1, 'b', 'a'])
    assert str(refused.value) == "refusing to touch queue 'q': key bull:q:wait has type hash, expected list"
    assert snapshot(redis_client) == before


@pytest.mark.parametrize('field,value', [('opts.maxLenEvents', '-5'), ('opts.maxLenEvents', 'abc'),
                                         ('concurrency', 'many')])
@pytest.mark.parametrize('state', ['repaired', 'retried', 'promoted', 'cleaned', 'paused', 'resumed'])
def test_bad_meta_count_is_refused_before_anything_is_written(redis_client, redis_params, state, field, value):
    base = 'bull:q:'
    redis_client.hset(base + 'meta', mapping={field: value, 'paused': 1})
    for n, kind in enumerate(('wait', 'active')):
        redis_client.hset(base + str(n), mapping={'data': '{}', 'timestamp': 1})
        redis_client.rpush(base + kind, n)
    redis_client.hset(base + '9', mapping={'data': '{}', 'timestamp': 1, 'finishedOn': 1})
    redis_client.zadd(base + ('completed' if state == 'cleaned' else 'failed' if state == 'retried' else 'delayed'),
                      {'9': 1})
    before = snapshot(redis_client)
    for check in (True, False):
        result = run_module('bullmq_queue', dict(redis_params, name='q', state=state), check_mode=check)
        assert result.failed and result['changed'] is False and 'Traceback' not in result.stderr
        assert result['msg'] == "refusing to touch queue 'q': meta field %s is '%s', not an integer from 0 to %d" % (
            field, value, 10 ** 15)
    assert snapshot(redis_client) == before


@pytest.mark.parametrize('state,kind', [('retried', 'failed'), ('promoted', 'delayed')])
def test_a_priority_counter_that_is_no_integer_is_refused_before_a_job_moves(redis_client, redis_params, state, kind):
    """A prioritized job increments ``pc``: on main the job left its set, INCR failed, the job was lost."""
    base = 'bull:q:'
    redis_client.set(base + 'pc', 'abc')
    redis_client.hset(base + 'p', mapping={'data': '{}', 'timestamp': 1, 'priority': 3, 'finishedOn': 1})
    redis_client.zadd(base + kind, {'p': 1})
    before = snapshot(redis_client)
    for check in (True, False):
        result = run_module('bullmq_queue', dict(redis_params, name='q', state=state), check_mode=check)
        assert result.failed and result['changed'] is False
        assert result['msg'] == "refusing to touch queue 'q': key bull:q:pc is 'abc', not an integer from 0 to %d" % (
            10 ** 15)
    assert snapshot(redis_client) == before


def test_info_reports_corrupt_active_jobs_instead_of_failing(redis_client, redis_params):
    base = 'bull:q:'
    for job_id in ('a', 'b', 'c', 'w'):
        redis_client.hset(base + job_id, mapping={'data': '{}', 'timestamp': 1, 'processedOn': 2})
    redis_client.set(base + 'b', 'x')
    redis_client.hset(base + 'c', 'stc', '007')  # HINCRBY refuses leading zeros
    redis_client.set(base + 'w', 'x')  # the oldest waiting job: its age is unknown
    redis_client.rpush(base + 'active', 'a', 'b', 'c')
    redis_client.rpush(base + 'wait', 'w')
    result = run_module('bullmq_queue_info', dict(redis_params, names=['q']))
    assert not result.failed, result
    info = result['queues']['q']
    assert info['stalled_candidates'] == 1 and info['corrupt_active'] == 2
    assert info['corrupt_active_sample'] == [
        {'id': 'c', 'reason': "field stc is '007', not an integer HINCRBY can increment"},
        {'id': 'b', 'reason': 'job key is a string, not a hash'}]
    assert info['oldest_waiting_age_seconds'] is None


@pytest.mark.parametrize('option,value', [('batch_size', 0), ('batch_size', 10001), ('max_stalled_count', -1),
                                          ('max_stalled_count', 10 ** 7), ('older_than', '-1s'),
                                          ('older_than', '1000 weeks 100000 days'), ('sample_size', -1),
                                          ('sample_size', 10 ** 6), ('older_than', 3600)])
def test_option_bounds_are_checked_before_connecting(option, value):
    # nothing listens on port 1: a bound checked after connecting would report "cannot connect"
    result = run_module('bullmq_queue', {'name': 'q', 'redis_port': 1, option: value})
    assert result.failed and result['msg'].startswith(option), result['msg']
    expected = 'is not a duration with a unit' if value in ('-1s', 3600) else 'must be between '
    assert expected in result['msg'] and '\n' not in result['msg'], result['msg']


def test_failure_after_earlier_batches_reports_changed(redis_client):
    """An error after some batches moved jobs: the caller learns that something changed."""
    from cerniq_testkit.ansible_run import collections_root  # noqa: F401 - the module path is set up
    base = 'bull:q:'
    for n in range(6):
        redis_client.hset(base + str(n), mapping={'data': '{}', 'timestamp': 1})
        redis_client.rpush(base + 'active', n)
    queue = Queue(redis_client, 'q', batch_size=2)
    original = queue._eval
    calls = []

    def second_call_finds_wait_changed(name, keys, args):
        calls.append(name)
        if len(calls) == 2:
            redis_client.delete(base + 'events')
            redis_client.set(base + 'events', 'now a string')
        return original(name, keys, args)

    queue._eval = second_call_finds_wait_changed
    with pytest.raises(BullMQError, match='key bull:q:events has type string, expected stream'):
        queue.repair()
    assert queue.handled == 2
    assert redis_client.llen(base + 'active') == 4 and redis_client.llen(base + 'wait') == 2


# Result keys Ansible gives a meaning of its own (task_result.py, the callbacks, loops).
RESERVED = {'failed', 'skipped', 'skip_reason', 'unreachable', 'rc', 'results', 'stdout', 'stdout_lines', 'stderr',
            'stderr_lines', 'attempts', 'retries', 'item', 'ansible_loop_var', 'censored', 'ansible_facts',
            'exception', 'module_stderr', 'module_stdout'}


def test_no_result_key_ansible_reserves(redis_client, redis_params):
    """Issue 13 defect 4, checked for the BullMQ modules: only Ansible's own keys with Ansible's meaning."""
    base = 'bull:q:'
    for job_id in ('a', 'b'):
        redis_client.hset(base + job_id, mapping={'data': '{}', 'timestamp': 1, 'finishedOn': 1})
    redis_client.set(base + 'b', 'x')
    redis_client.rpush(base + 'active', 'a', 'b')
    redis_client.zadd(base + 'failed', {'a': 1})
    redis_client.set('circuit:anaf:state', 'OPEN')
    runs = [run_module('bullmq_queue_info', dict(redis_params, names=['q', 'nope'], ignore_missing=True))]
    for state in ('repaired', 'retried', 'promoted', 'cleaned', 'paused', 'resumed'):
        for check in (True, False):
            runs.append(run_module('bullmq_queue', dict(redis_params, name='q', state=state), check_mode=check,
                                   diff=True))
    runs.append(run_module('circuit_breaker', dict(redis_params, sources=['anaf'], state='closed'), diff=True))
    runs.append(run_module('bullmq_queue', dict(redis_params, name='missing')))
    for result in runs:
        assert not set(result) & RESERVED - ({'failed'} if result.failed else set()), result
        assert isinstance(result['changed'], bool)
        assert result.failed == ('msg' in result), result
        assert set(result.get('diff', {})) <= {'before', 'after', 'before_header', 'after_header'}
    assert any(result.get('corrupt_count') for result in runs)
