"""Stalled-job repair against real Redis and real BullMQ workers (current model and BullMQ 5 model)."""

import collections

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.bullmq import Queue
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.bullmq_helpers import (
    FLAVOURS, PY_CURRENT, PY_V5, finish, orphan_active_jobs, run, snapshot, start_worker, wait_until)

Q = 'bronze:ingest:csv'
K = 'bull:%s:' % Q


def _key(kind):
    return (K + kind).encode()


def _counts_total(counts):
    return sum(counts.values())


@pytest.mark.parametrize('flavour', ['current', 'v5'])
def test_only_lockless_jobs_move_and_nothing_runs_twice(redis_server, redis_client, redis_params, flavour):
    py = FLAVOURS[flavour]
    run(py, 'produce', redis_server.port, Q, '--count', 40)
    dead = orphan_active_jobs(py, redis_server.port, Q, redis_client, 5)
    # A live worker takes 3 jobs and holds them (long sleep on its first 3, lock renewed).
    live = start_worker(py, redis_server.port, Q, '--concurrency', 3, '--sleep-ms', 4000, '--sleep-first', 3,
                        '--lock-ms', 30000, '--record', 'test:processed', '--until', 40)
    wait_until(lambda: redis_client.llen('test:processed') >= 3 and redis_client.llen(_key('active')) >= 8,
               what='live worker busy')
    held = set(redis_client.lrange('test:processed', 0, 2))

    result = run_module('bullmq_queue', dict(redis_params, name=Q, state='repaired'))
    assert not result.failed, result
    assert result['changed'] is True
    assert result['moved'] == 5
    assert set(i.encode() for i in result['moved_sample']) == set(dead)
    assert result['skipped_locked'] == 3
    assert set(s['id'].encode() for s in result['skipped_locked_sample']) == held
    assert _counts_total(result['before']) == _counts_total(result['after']) == 40

    finish(live)
    processed = redis_client.lrange('test:processed', 0, -1)
    dupes = [i for i, n in collections.Counter(processed).items() if n > 1]
    assert dupes == [], 'jobs processed twice: %r' % dupes
    assert len(processed) == 40
    assert redis_client.zcard(_key('completed')) == 40
    assert redis_client.llen(_key('active')) == 0


def test_conservation_and_job_hash_untouched_except_counter(redis_server, redis_client, redis_params):
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 300)
    dead = orphan_active_jobs(PY_CURRENT, redis_server.port, Q, redis_client, 20)
    hashes = dict((i, redis_client.hgetall(_key(i.decode()))) for i in dead)
    queue = Queue(redis_client, Q, batch_size=7)  # several batches
    before = queue.counts()
    result = queue.repair()
    assert result['moved'] == 20
    assert len(queue.call_times) >= 3
    after = queue.counts()
    assert _counts_total(before) == _counts_total(after) == 300
    assert after['active'] == 0 and after['wait'] == 300
    for job_id, old in hashes.items():
        new = redis_client.hgetall(_key(job_id.decode()))
        assert new.pop(b'stc') == str(int(old.pop(b'stc', b'0')) + 1).encode()
        assert new == old
    # every moved id is in wait exactly once
    wait = collections.Counter(redis_client.lrange(_key('wait'), 0, -1))
    assert all(wait[i] == 1 for i in dead)
    assert max(wait.values()) == 1


def test_stalled_counter_and_max_stalled_defers_failure(redis_server, redis_client, redis_params):
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 6)
    dead = orphan_active_jobs(PY_CURRENT, redis_server.port, Q, redis_client, 3)
    poison = dead[0]
    redis_client.hset(_key(poison.decode()), 'stc', 1)  # it stalled once before
    result = run_module('bullmq_queue', dict(redis_params, name=Q, max_stalled_count=1))
    assert result['moved'] == 3 and result['over_limit'] == 1
    assert result['over_limit_sample'] == [poison.decode()]
    assert redis_client.hget(_key(poison.decode()), 'defa') == b'job stalled more than allowable limit'
    assert redis_client.hget(_key(dead[1].decode()), 'defa') is None
    # A real worker then fails the poison job instead of running it; the others complete.
    finish(start_worker(PY_CURRENT, redis_server.port, Q, '--record', 'test:processed', '--until', 5, '--seconds', 60))
    assert redis_client.zrange(_key('failed'), 0, -1) == [poison]
    assert redis_client.hget(_key(poison.decode()), 'failedReason') == b'job stalled more than allowable limit'
    assert redis_client.zcard(_key('completed')) == 5
    assert poison not in redis_client.lrange('test:processed', 0, -1)


def test_old_version_counter_field_and_inline_failure(redis_client):
    """Before 5.49 the counter is ``stalledCounter``; before 5.53.2 an over-limit job is failed inline."""
    redis_client.hset(_key('meta'), mapping={'version': 'bullmq:5.40.0', 'opts.maxLenEvents': 10000})
    for job_id, stalls in (('a', 0), ('b', 1)):
        redis_client.hset(_key(job_id), mapping={'name': 'x', 'data': '{}', 'timestamp': 1, 'processedOn': 2,
                                                 'stalledCounter': stalls})
        redis_client.lpush(_key('active'), job_id)
    predicted = Queue(redis_client, Q).repair(max_stalled_count=1, check_mode=True)
    assert predicted['moved'] == 1 and predicted['over_limit'] == 1
    result = Queue(redis_client, Q).repair(max_stalled_count=1)
    assert result['after'] == predicted['after'] == dict(predicted['before'], active=0, wait=1, failed=1)
    assert result['moved'] == 1 and result['over_limit'] == 1
    assert result['stalled_counter_field'] == 'stalledCounter' and result['over_limit_treatment'] == 'fail'
    assert redis_client.lrange(_key('wait'), 0, -1) == [b'a']
    assert redis_client.zrange(_key('failed'), 0, -1) == [b'b']
    assert redis_client.hget(_key('b'), 'failedReason') == b'job stalled more than allowable limit'
    assert redis_client.hget(_key('a'), 'stalledCounter') == b'1'
    assert not redis_client.hexists(_key('a'), 'stc')


def test_paused_v5_queue_gets_jobs_in_paused_list_then_resume_runs_all_once(
        redis_server, redis_client, redis_params):
    run(PY_V5, 'produce', redis_server.port, Q, '--count', 30)
    dead = orphan_active_jobs(PY_V5, redis_server.port, Q, redis_client, 5)
    run(PY_V5, 'pause', redis_server.port, Q)  # BullMQ 5: RENAME wait -> paused
    assert redis_client.llen(_key('wait')) == 0 and redis_client.llen(_key('paused')) == 25
    result = run_module('bullmq_queue', dict(redis_params, name=Q))
    assert result['target'] == 'paused' and result['data_model'] == 'v5'
    assert result['moved'] == 5
    assert redis_client.llen(_key('paused')) == 30 and not redis_client.exists(_key('wait'))
    assert not redis_client.exists(_key('marker'))  # paused: no wake-up
    run(PY_V5, 'resume', redis_server.port, Q)  # BullMQ 5: RENAME paused -> wait
    finish(start_worker(PY_V5, redis_server.port, Q, '--record', 'test:processed', '--until', 30, '--seconds', 90))
    processed = redis_client.lrange('test:processed', 0, -1)
    assert sorted(processed) == sorted(set(processed)) and len(processed) == 30
    assert set(dead) <= set(processed)
    assert redis_client.zcard(_key('completed')) == 30


@pytest.mark.parametrize('flavour', ['current', 'v5'])
def test_marker_wakes_an_idle_worker(redis_server, redis_client, redis_params, flavour):
    py = FLAVOURS[flavour]
    run(py, 'produce', redis_server.port, Q, '--count', 4)
    orphan_active_jobs(py, redis_server.port, Q, redis_client, 4)
    assert redis_client.llen(_key('wait')) == 0
    # The idle worker blocks on the marker for drainDelay=300 s; it only runs 60 s, so it can only
    # process the jobs if the repair's marker wakes it.
    idle = start_worker(py, redis_server.port, Q, '--drain-delay', 300, '--seconds', 60,
                        '--record', 'test:processed', '--until', 4)
    wait_until(lambda: any(b'BZPOPMIN' in (c.get('cmd') or '').upper().encode()
                           for c in redis_client.client_list()), what='worker blocked on marker')
    assert Queue(redis_client, Q).repair()['moved'] == 4
    assert finish(idle)['recorded'] == 4


def test_events_written_and_trimmed(redis_server, redis_client, redis_params):
    redis_client.hset(_key('meta'), 'opts.maxLenEvents', 50)
    for n in range(300):
        redis_client.hset(_key(str(n)), mapping={'name': 'x', 'data': '{}', 'timestamp': 1, 'processedOn': 2})
        redis_client.lpush(_key('active'), str(n))
    result = Queue(redis_client, Q, batch_size=100).repair()
    assert result['moved'] == 300
    events = redis_client.xrevrange(_key('events'), count=4)
    assert events[0][1] == {b'event': b'stalled', b'jobId': b'299'}
    assert events[1][1] == {b'event': b'waiting', b'jobId': b'299', b'prev': b'active'}
    assert redis_client.xlen(_key('events')) < 300  # trimmed (MAXLEN ~ 50: whole stream nodes)


def test_check_mode_writes_nothing_and_second_run_is_unchanged(redis_server, redis_client, redis_params):
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 50)
    orphan_active_jobs(PY_CURRENT, redis_server.port, Q, redis_client, 6)
    redis_client.delete('test:first-worker')
    before = snapshot(redis_client)
    checked = run_module('bullmq_queue', dict(redis_params, name=Q), check_mode=True, diff=True)
    assert checked['changed'] is True and checked['moved'] == 6
    assert checked['after']['active'] == 0 and checked['after']['wait'] == 50
    assert 'active: 6' in checked['diff']['before'] and 'active: 0' in checked['diff']['after']
    assert snapshot(redis_client) == before
    first = run_module('bullmq_queue', dict(redis_params, name=Q), diff=True)
    assert first['changed'] is True and first['after'] == checked['after']
    second = run_module('bullmq_queue', dict(redis_params, name=Q))
    assert second['changed'] is False and second['moved'] == 0
    again = snapshot(redis_client)
    third = run_module('bullmq_queue', dict(redis_params, name=Q), check_mode=True)
    assert third['changed'] is False and snapshot(redis_client) == again


def test_redis_cluster_with_hash_tag_prefix(redis_cluster):
    import redis.cluster
    client = redis.cluster.RedisCluster(host='127.0.0.1', port=redis_cluster.port)
    client.flushall()
    prefix = '{bull}'
    run(PY_CURRENT, 'produce', redis_cluster.port, Q, '--count', 20, prefix=prefix, cluster=True)
    dead = orphan_active_jobs(PY_CURRENT, redis_cluster.port, Q, client, 4, prefix=prefix,
                              record='{bull}:test:first', cluster=True)
    params = redis_cluster.params()
    info = run_module('bullmq_queue_info', dict(params, prefix=prefix))
    assert not info.failed, info
    assert info['names'] == [Q]
    assert info['queues'][Q]['stalled_candidates'] == 4
    result = run_module('bullmq_queue', dict(params, prefix=prefix, name=Q))
    assert not result.failed, result
    assert result['moved'] == 4 and set(i.encode() for i in result['moved_sample']) == set(dead)
    assert result['after']['wait'] == 20 and result['after']['active'] == 0
    assert run_module('bullmq_queue', dict(params, prefix=prefix, name=Q))['changed'] is False
    client.close()
