"""cerniq_testkit's fork server runs a module exactly as a new Python process does (the tests' run_module)."""

import threading

from cerniq_testkit import ansible_run


def both_ways(monkeypatch, name, args, **kwargs):
    results = []
    for fork in ('0', '1'):
        monkeypatch.setenv('CERNIQ_TEST_FORK_SERVER', fork)
        results.append(ansible_run.run_module(name, args, **kwargs))
    return results


def test_a_result_and_its_exit_code_are_the_same_both_ways(monkeypatch, redis_params, redis_client):
    redis_client.set('circuit:anaf:state', 'OPEN')
    plain, forked = both_ways(monkeypatch, 'circuit_breaker_info', dict(redis_params, sources=['anaf', 'termene']))
    assert plain == forked and plain.rc == forked.rc == 0
    assert forked['sources']['anaf']['open'] is True


def test_check_mode_and_a_failure_are_the_same_both_ways(monkeypatch, redis_params, redis_client):
    redis_client.set('circuit:anaf:state', 'OPEN')
    plain, forked = both_ways(monkeypatch, 'circuit_breaker', dict(redis_params, sources=['anaf'], state='closed'),
                              check_mode=True)
    assert plain == forked and forked['changed'] is True
    assert redis_client.get('circuit:anaf:state') == b'OPEN'
    plain, forked = both_ways(monkeypatch, 'circuit_breaker', dict(redis_params, sources=['anaf']))
    assert plain == forked and plain.rc == forked.rc == 1 and forked['msg'] == 'missing required arguments: state'


def test_the_environment_is_the_callers(monkeypatch, pg_db):
    """PGPORT given to one call reaches that module (its argument spec's fallback reads it), and only that one."""
    args = dict((key, value) for key, value in pg_db.items() if key != 'login_port')
    monkeypatch.setenv('CERNIQ_TEST_FORK_SERVER', '1')
    found = ansible_run.run_module('pg_health_info', dict(args, sections=['connections']),
                                   env=dict(PGPORT=str(pg_db['login_port'])))
    assert not found.failed, found
    missed = ansible_run.run_module('pg_health_info', dict(args, sections=['connections'], connect_timeout='2s'),
                                    env=dict(PGPORT='1'))
    assert missed.failed and missed.rc == 1


def test_modules_run_at_the_same_time(monkeypatch, pg_db):
    """Two runs at once (lock tests need that): both complete, each with its own result."""
    monkeypatch.setenv('CERNIQ_TEST_FORK_SERVER', '1')
    results = [None, None]

    def run(index):
        results[index] = ansible_run.run_module('pg_health_info', dict(pg_db, sections=['connections']))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result is not None and not result.failed for result in results), results
