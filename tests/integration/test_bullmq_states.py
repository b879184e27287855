"""retried / cleaned / promoted / paused / resumed with real BullMQ producers and workers."""

import collections

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.bullmq import Queue
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.bullmq_helpers import FLAVOURS, PY_CURRENT, PY_V5, finish, run, snapshot, start_worker

Q = 'silver:enrich:anaf-fiscal-status'
K = 'bull:%s:' % Q


def _key(kind):
    return (K + kind).encode()


def test_retry_failed_jobs_with_limit_then_all(redis_server, redis_client, redis_params):
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 30)
    finish(start_worker(PY_CURRENT, redis_server.port, Q, '--fail', '--record', 'test:failing', '--until', 30))
    assert redis_client.zcard(_key('failed')) == 30
    # older_than excludes everything that just failed
    young = run_module('bullmq_queue', dict(redis_params, name=Q, state='retried', older_than='1h'))
    assert young['changed'] is False and young['moved'] == 0
    before = snapshot(redis_client)
    checked = run_module('bullmq_queue', dict(redis_params, name=Q, state='retried', limit=10), check_mode=True)
    assert checked['changed'] is True and checked['moved'] == 10 and checked['after']['failed'] == 20
    assert snapshot(redis_client) == before
    part = run_module('bullmq_queue', dict(redis_params, name=Q, state='retried', limit=10, batch_size=4))
    assert part['moved'] == 10 and part['after']['failed'] == 20 and part['after']['wait'] == 10
    oldest = redis_client.zrange(_key('failed'), 0, 0)
    rest = run_module('bullmq_queue', dict(redis_params, name=Q, state='retried'))
    assert rest['moved'] == 20 and rest['after']['failed'] == 0 and rest['after']['wait'] == 30
    assert oldest[0].decode() in rest['moved_sample']
    assert not redis_client.hexists(_key(oldest[0].decode()), 'failedReason')
    assert run_module('bullmq_queue', dict(redis_params, name=Q, state='retried'))['changed'] is False
    # the retried jobs run again with a healthy worker
    finish(start_worker(PY_CURRENT, redis_server.port, Q, '--record', 'test:processed', '--until', 30))
    assert redis_client.zcard(_key('completed')) == 30


def test_clean_completed_deletes_job_keys(redis_server, redis_client, redis_params):
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 25)
    finish(start_worker(PY_CURRENT, redis_server.port, Q, '--record', 'test:processed', '--until', 25))
    ids = [i.decode() for i in redis_client.zrange(_key('completed'), 0, -1)]
    redis_client.rpush(_key(ids[0]) + b':logs', 'a log line')
    kept = run_module('bullmq_queue', dict(redis_params, name=Q, state='cleaned', older_than='1h'))
    assert kept['changed'] is False and kept['deleted'] == 0
    checked = run_module('bullmq_queue', dict(redis_params, name=Q, state='cleaned', limit=5), check_mode=True)
    assert checked['deleted'] == 5 and redis_client.zcard(_key('completed')) == 25
    result = run_module('bullmq_queue', dict(redis_params, name=Q, state='cleaned', limit=5, batch_size=2))
    assert result['deleted'] == 5 and result['after']['completed'] == 20
    deleted = result['deleted_sample']
    assert ids[0] in deleted
    for job_id in deleted:
        assert not redis_client.exists(_key(job_id))
    assert not redis_client.exists(_key(ids[0]) + b':logs')
    remaining = redis_client.zrange(_key('completed'), 0, -1)
    assert all(redis_client.exists(_key(i.decode())) for i in remaining)
    assert redis_client.xrevrange(_key('events'), count=1)[0][1] == {b'event': b'cleaned', b'count': b'1'}
    rest = run_module('bullmq_queue', dict(redis_params, name=Q, state='cleaned'))
    assert rest['deleted'] == 20 and rest['after']['completed'] == 0
    failed = run_module('bullmq_queue', dict(redis_params, name=Q, state='cleaned', clean_state='failed'))
    assert failed['changed'] is False


def test_promote_delayed(redis_server, redis_client, redis_params):
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 12, '--delay', 3600000)
    assert redis_client.zcard(_key('delayed')) == 12
    result = run_module('bullmq_queue', dict(redis_params, name=Q, state='promoted', batch_size=5), diff=True)
    assert result['moved'] == 12 and result['after']['delayed'] == 0 and result['after']['wait'] == 12
    assert redis_client.zscore(_key('marker'), '0') == 0
    assert run_module('bullmq_queue', dict(redis_params, name=Q, state='promoted'))['changed'] is False
    finish(start_worker(PY_CURRENT, redis_server.port, Q, '--record', 'test:processed', '--until', 12))
    assert redis_client.zcard(_key('completed')) == 12


@pytest.mark.parametrize('flavour', ['current', 'v5'])
def test_pause_and_resume_keep_every_job(redis_server, redis_client, redis_params, flavour):
    py = FLAVOURS[flavour]
    run(py, 'produce', redis_server.port, Q, '--count', 20)
    model = 'v6' if flavour == 'current' else 'v5'
    checked = run_module('bullmq_queue', dict(redis_params, name=Q, state='paused', data_model=model),
                         check_mode=True)
    assert checked['changed'] is True and not redis_client.hexists(_key('meta'), 'paused')
    paused = run_module('bullmq_queue', dict(redis_params, name=Q, state='paused', data_model=model))
    assert paused['changed'] is True and redis_client.hexists(_key('meta'), 'paused')
    if flavour == 'v5':
        assert paused['after']['paused'] == 20 and paused['after']['wait'] == 0
    else:
        assert paused['after']['wait'] == 20
    assert run_module('bullmq_queue', dict(redis_params, name=Q, state='paused',
                                           data_model=model))['changed'] is False
    # the producer adds while paused (v5: into the paused list)
    run(py, 'produce', redis_server.port, Q, '--count', 5)
    resumed = run_module('bullmq_queue', dict(redis_params, name=Q, state='resumed', data_model=model))
    assert resumed['changed'] is True and resumed['after']['wait'] == 25 and resumed['after']['paused'] == 0
    assert redis_client.zscore(_key('marker'), '0') == 0
    assert run_module('bullmq_queue', dict(redis_params, name=Q, state='resumed'))['changed'] is False
    finish(start_worker(py, redis_server.port, Q, '--record', 'test:processed', '--until', 25))
    processed = redis_client.lrange('test:processed', 0, -1)
    assert len(processed) == 25 and len(set(processed)) == 25


def test_resume_never_overwrites_wait(redis_client):
    """BullMQ 5's resume RENAMEs paused over wait; ours appends in bounded steps."""
    redis_client.hset(_key('meta'), 'paused', 1)
    redis_client.rpush(_key('paused'), *['p%d' % i for i in range(23)])
    redis_client.rpush(_key('wait'), *['w%d' % i for i in range(7)])
    result = Queue(redis_client, Q, batch_size=5).resume()
    assert result['after']['wait'] == 30 and result['after']['paused'] == 0
    assert collections.Counter(redis_client.lrange(_key('wait'), 0, -1)) == collections.Counter(
        [('p%d' % i).encode() for i in range(23)] + [('w%d' % i).encode() for i in range(7)])
    assert redis_client.xrevrange(_key('events'), count=1)[0][1] == {b'event': b'resumed'}


def test_real_v5_resume_after_our_pause(redis_server, redis_client, redis_params):
    run(PY_V5, 'produce', redis_server.port, Q, '--count', 10)
    assert run_module('bullmq_queue', dict(redis_params, name=Q, state='paused'))['after']['paused'] == 10
    run(PY_V5, 'resume', redis_server.port, Q)
    finish(start_worker(PY_V5, redis_server.port, Q, '--record', 'test:processed', '--until', 10))
    assert redis_client.zcard(_key('completed')) == 10
