"""circuit_breaker and circuit_breaker_info against a real Redis (and a cluster for key templates across slots)."""

from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.bullmq_helpers import snapshot


def _seed(client):
    client.set('circuit:anaf:state', 'OPEN', px=3600000)  # TTLs outlive a slow run
    client.set('circuit:anaf:failures', 12)
    client.set('rate_limit:anaf:remaining', 0, px=2410000)
    client.set('circuit:termene:state', 'CLOSED')
    client.set('circuit:termene:failures', 2)
    client.set('rate_limit:termene:remaining', 87)


def test_read_reports_state_failures_and_rate_limit(redis_client, redis_params):
    _seed(redis_client)
    result = run_module('circuit_breaker_info', dict(redis_params, sources=['anaf', 'termene', 'other']))
    assert not result.failed and result['changed'] is False
    anaf = result['sources']['anaf']
    assert anaf['state'] == 'OPEN' and anaf['open'] is True and anaf['failures'] == 12
    assert anaf['rate_limit_remaining'] == 0 and 2000 < anaf['rate_limit_reset_seconds'] <= 2410
    assert result['sources']['termene']['open'] is False
    assert result['sources']['termene']['rate_limit_remaining'] == 87
    assert result['sources']['other'] == dict(result['sources']['other'], state=None, open=False, failures=None)


def test_reset_only_open_breakers_check_mode_and_idempotence(redis_client, redis_params):
    _seed(redis_client)
    before = snapshot(redis_client)
    args = dict(redis_params, sources=['anaf', 'termene'], state='closed')
    checked = run_module('circuit_breaker', args, check_mode=True, diff=True)
    assert checked['changed'] is True and checked['closed'] == ['anaf']
    assert 'anaf: state=OPEN failures=12' in checked['diff']['before']
    assert 'anaf: state=None failures=None' in checked['diff']['after']
    assert snapshot(redis_client) == before
    done = run_module('circuit_breaker', args)
    assert done['changed'] is True and done['closed'] == ['anaf']
    assert not redis_client.exists('circuit:anaf:state', 'circuit:anaf:failures')
    assert redis_client.get('rate_limit:anaf:remaining') == b'0'  # the rate limit resets by itself
    assert redis_client.get('circuit:termene:state') == b'CLOSED'
    assert redis_client.get('circuit:termene:failures') == b'2'
    again = run_module('circuit_breaker', args)
    assert again['changed'] is False and again['closed'] == []
    forced = run_module('circuit_breaker', dict(args, sources=['termene'], force=True))
    assert forced['changed'] is True and not redis_client.exists('circuit:termene:state')


def test_custom_templates_and_open_values(redis_client, redis_params):
    redis_client.set('cb/anaf', 'half-open')
    redis_client.set('cb/anaf/n', 3)
    args = dict(redis_params, sources=['anaf'], state='closed', state_key='cb/{source}',
                failures_key='cb/{source}/n', open_values=['open', 'HALF-OPEN'])
    result = run_module('circuit_breaker', args)
    assert result['changed'] is True and not redis_client.exists('cb/anaf', 'cb/anaf/n')


def test_refusals(redis_client, redis_params, redis_auth_server):
    redis_client.hset('circuit:anaf:state', 'x', 1)
    redis_client.set('circuit:termene:state', 'OPEN')
    wrong = run_module('circuit_breaker', dict(redis_params, sources=['termene', 'anaf'], state='closed'))
    assert wrong.failed and wrong['msg'] == \
        "refusing source 'anaf': key circuit:anaf:state has type hash, expected string"
    assert redis_client.get('circuit:termene:state') == b'OPEN'  # nothing written
    bad = run_module('circuit_breaker_info', dict(redis_params, sources=['anaf'], state_key='circuit:state'))
    assert bad.failed and 'no {source} placeholder' in bad['msg']
    denied = run_module('circuit_breaker_info', dict(redis_auth_server.params(redis_password='nope'), sources=['a']))
    assert denied.failed and 'authentication failed' in denied['msg'] and 'nope' not in denied['msg']


def test_cluster(redis_cluster):
    import redis.cluster
    client = redis.cluster.RedisCluster(host='127.0.0.1', port=redis_cluster.port)
    client.flushall()
    client.set('circuit:anaf:state', 'OPEN')
    client.set('circuit:anaf:failures', 5)
    result = run_module('circuit_breaker', dict(redis_cluster.params(), sources=['anaf'], state='closed'))
    assert not result.failed, result
    assert result['closed'] == ['anaf'] and not client.exists('circuit:anaf:state')
    assert not client.exists('circuit:anaf:failures')
    client.close()


def test_empty_or_clashing_templates_are_refused_before_connecting(redis_client, redis_params):
    """Issue 13 defect 12: an empty state_key silently fell back to the default key."""
    redis_client.set('circuit:anaf:state', 'OPEN')
    for template, msg in (
            (dict(state_key=''), "state_key must not be empty (leave it unset for the default "
                                 "'circuit:{source}:state')"),
            (dict(failures_key=''), 'failures_key must not be empty'),
            (dict(rate_limit_key='circuit:{source}:state'),
             "rate_limit_key and state_key name the same key 'circuit:{source}:state'")):
        for params in (redis_params, dict(redis_params, redis_port=1)):  # port 1: nothing listens
            result = run_module('circuit_breaker', dict(params, sources=['anaf'], state='closed', **template))
            assert result.failed and result['msg'].startswith(msg), result
    assert redis_client.get('circuit:anaf:state') == b'OPEN'


def test_counts_that_are_no_numbers_are_reported_as_stored(redis_client, redis_params):
    redis_client.set('circuit:anaf:failures', 'inf')
    redis_client.set('rate_limit:anaf:remaining', '1e999')
    result = run_module('circuit_breaker_info', dict(redis_params, sources=['anaf']))
    assert not result.failed, result
    assert result['sources']['anaf']['failures'] == 'inf'
    assert result['sources']['anaf']['rate_limit_remaining'] == '1e999'


def test_state_is_required_and_read_is_the_info_module(redis_client, redis_params):
    """1.0: no default state - a call written for the old default (read) fails instead of changing Redis."""
    redis_client.set('circuit:anaf:state', 'OPEN')
    for args in (dict(), dict(state='read'), dict(state='reset')):
        result = run_module('circuit_breaker', dict(redis_params, sources=['anaf'], **args))
        assert result.failed and 'state' in result['msg'], result
    assert redis_client.get('circuit:anaf:state') == b'OPEN'
    checked = run_module('circuit_breaker_info', dict(redis_params, sources=['anaf']), check_mode=True)
    assert not checked.failed and checked['changed'] is False and checked['sources']['anaf']['open'] is True
