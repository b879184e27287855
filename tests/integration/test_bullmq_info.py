"""bullmq_queue_info and the refusals (unknown queue, wrong key type, Redis down, wrong password)."""

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.bullmq import BullMQError, Queue, QueueKeys, hash_tag
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.bullmq_helpers import PY_CURRENT, PY_V5, orphan_active_jobs, run, snapshot, start_worker, \
    wait_until
from cerniq_testkit.servers import free_port

Q = 'bronze:ingest:csv'


def test_keys_are_built_never_split():
    keys = QueueKeys('bull:bronze:ingest', 'csv')
    assert keys['wait'] == b'bull:bronze:ingest:csv:wait'
    keys = QueueKeys('bull', 'bronze:ingest:csv')
    assert keys['wait'] == b'bull:bronze:ingest:csv:wait'
    assert keys.lock('a:b') == b'bull:bronze:ingest:csv:a:b:lock'
    with pytest.raises(BullMQError):
        QueueKeys('', 'x')


def test_hash_tag_follows_redis_cluster_rules():
    assert hash_tag('{bull}:q:') == 'bull'
    assert hash_tag('bull:{q}:') == 'q'
    assert hash_tag('{a}{b}:') == 'a'
    assert hash_tag('bull:q:') is None
    assert hash_tag('{}bull:q:') is None  # an empty tag does not count
    assert hash_tag('bull:{q:') is None  # no closing brace in the part every key shares


def test_info_counts_candidates_ages_and_discovery(redis_server, redis_client, redis_params):
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 30)
    run(PY_CURRENT, 'produce', redis_server.port, 'other', '--count', 3, '--delay', 60000)
    dead = orphan_active_jobs(PY_CURRENT, redis_server.port, Q, redis_client, 4)
    live = start_worker(PY_CURRENT, redis_server.port, Q, '--concurrency', 2, '--sleep-ms', 600000,
                        '--record', 'test:live')
    try:
        wait_until(lambda: redis_client.llen('test:live') >= 2, what='live jobs')
        before = snapshot(redis_client)
        result = run_module('bullmq_queue_info', dict(redis_params, sample_size=3))
        assert not result.failed, result
        assert snapshot(redis_client) == before
        assert result['changed'] is False
        assert result['names'] == ['bronze:ingest:csv', 'other']
        info = result['queues'][Q]
        assert info['counts']['active'] == 6 and info['counts']['wait'] == 24 and info['total'] == 30
        assert info['stalled_candidates'] == 4 and info['locked_active'] == 2
        assert len(info['stalled_candidate_sample']) == 3
        assert set(s['id'].encode() for s in info['stalled_candidate_sample']) <= set(dead)
        assert info['oldest_active_age_seconds'] >= info['oldest_stalled_candidate_age_seconds'] > 0
        assert info['oldest_waiting_age_seconds'] > 0
        assert info['paused'] is False
        assert result['queues']['other']['counts']['delayed'] == 3
        named = run_module('bullmq_queue_info', dict(redis_params, names=['other'], scan_active=False))
        assert list(named['queues']) == ['other'] and 'stalled_candidates' not in named['queues']['other']
    finally:
        live.kill()
        live.wait()


def test_version_and_model_detection(redis_server, redis_client, redis_params):
    run(PY_V5, 'produce', redis_server.port, Q, '--count', 3, '--paused')
    info = run_module('bullmq_queue_info', dict(redis_params, names=[Q]))['queues'][Q]
    assert info['paused'] is True and info['data_model'] == 'v5' and info['counts']['paused'] == 3
    redis_client.hset(b'bull:' + Q.encode() + b':meta', 'version', 'bullmq:6.7.0')
    info = run_module('bullmq_queue_info', dict(redis_params, names=[Q]))['queues'][Q]
    assert info['version'] == 'bullmq:6.7.0' and info['data_model'] == 'v6'
    assert info['data_model_source'] == 'meta.version'


def test_unknown_queue_is_refused(redis_params):
    result = run_module('bullmq_queue', dict(redis_params, name='no:such:queue'))
    assert result.failed
    assert "queue 'no:such:queue' not found under prefix 'bull'" in result['msg']
    info = run_module('bullmq_queue_info', dict(redis_params, names=['nope']))
    assert info.failed and 'not found' in info['msg']


def test_wrong_key_type_is_refused_and_nothing_written(redis_client, redis_params):
    redis_client.lpush(b'bull:q:active', 'a')
    redis_client.set(b'bull:q:wait', 'not a list')
    before = snapshot(redis_client)
    for state in ('repaired', 'retried', 'cleaned', 'paused', 'resumed', 'promoted'):
        result = run_module('bullmq_queue', dict(redis_params, name='q', state=state))
        assert result.failed
        assert result['msg'] == 'refusing to touch queue \'q\': key bull:q:wait has type string, expected list'
    assert snapshot(redis_client) == before


def test_bad_options_are_refused(redis_client, redis_params):
    redis_client.lpush(b'bull:q:active', 'a')
    for args, text in ((dict(batch_size=0), 'batch_size'), (dict(limit=0), 'limit'),
                       (dict(older_than='-1s'), 'older_than'), (dict(older_than=60), 'older_than'), (dict(state='exploded'), 'state')):
        result = run_module('bullmq_queue', dict(redis_params, name='q', **args))
        assert result.failed and text in result['msg']
    assert redis_client.llen(b'bull:q:active') == 1


def test_redis_down_and_wrong_password_one_line(redis_auth_server):
    down = run_module('bullmq_queue_info', dict(redis_host='127.0.0.1', redis_port=free_port()))
    assert down.failed and 'server unreachable' in down['msg'] and '\n' not in down['msg']
    wrong = run_module('bullmq_queue', dict(redis_auth_server.params(redis_password='wrong'), name=Q))
    assert wrong.failed and 'authentication failed' in wrong['msg'] and '\n' not in wrong['msg']
    assert 'wrong' not in wrong['msg'].replace('authentication failed', '')
    none = run_module('bullmq_queue', dict(redis_host='127.0.0.1', redis_port=redis_auth_server.port, name=Q))
    assert none.failed and 'authentication required' in none['msg']


def test_ids_with_colons_and_limit(redis_client):
    keys = QueueKeys('bull', Q)
    for job_id in ('a:1', 'b:2', 'c:3'):
        redis_client.hset(keys.job(job_id), mapping={'name': 'x', 'data': '{}', 'timestamp': 1})
        redis_client.lpush(keys['active'], job_id)
    redis_client.set(keys.lock('b:2'), 'token', px=3600000)
    result = Queue(redis_client, Q).repair(limit=1)
    assert result['moved'] == 1 and result['moved_sample'] == ['a:1']
    result = Queue(redis_client, Q).repair()
    assert result['moved'] == 1 and result['moved_sample'] == ['c:3'] and result['skipped_locked'] == 1
    assert redis_client.lrange(keys['active'], 0, -1) == [b'b:2']
    assert sorted(redis_client.lrange(keys['wait'], 0, -1)) == [b'a:1', b'c:3']
    assert redis_client.exists(keys.lock('b:2'))


def test_busy_queue_shows_no_false_stalled_candidates(redis_server, redis_client):
    """Jobs finishing while the active list is read must not look stalled.

    Two real workers (concurrency 25 each) drain 6,000 instant jobs while the engine scans the
    active list again and again. Read in two round trips (ids, then locks) a job that completes in
    between is "active without a lock"; each window is read atomically, so every scan finds 0.
    """
    run(PY_CURRENT, 'produce', redis_server.port, Q, '--count', 6000)
    workers = [start_worker(PY_CURRENT, redis_server.port, Q, '--concurrency', 25, '--record', 'test:done',
                            '--seconds', 120) for _worker in range(2)]
    queue = Queue(redis_client, Q, batch_size=10)  # several windows per scan
    scans, busy, false_candidates = 0, 0, []
    try:
        wait_until(lambda: redis_client.llen('test:done') > 0, what='workers started')
        while redis_client.llen('test:done') < 5500:
            result = queue.scan_active(now=0)
            scans += 1
            busy += result['locked'] > 0
            if result['candidates']:
                false_candidates.append(result['candidate_sample'])
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert busy > 50, (scans, busy)  # the scans really saw a busy queue
    assert false_candidates == [], '%d of %d scans saw stalled candidates: %s' % (
        len(false_candidates), scans, false_candidates[:3])


def test_cluster_queue_without_hash_tag_is_refused(redis_cluster):
    import redis.cluster
    client = redis.cluster.RedisCluster(host='127.0.0.1', port=redis_cluster.port)
    try:
        with pytest.raises(BullMQError, match=r'no hash tag.*use a hash-tagged prefix such as \{bull\}'):
            Queue(client, Q, prefix='bull')
        assert Queue(client, Q, prefix='{bull}').keys.base == '{bull}:%s:' % Q
        assert Queue(client, '{%s}' % Q).keys.base == 'bull:{%s}:' % Q
    finally:
        client.close()
    params = redis_cluster.params()
    result = run_module('bullmq_queue', dict(params, name=Q, prefix='bull'))
    assert result.failed and 'no hash tag' in result['msg'] and 'Traceback' not in result['msg']
