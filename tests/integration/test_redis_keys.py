"""cerniq.ops.redis_keys and its engine against real throwaway Redis servers (single and cluster)."""

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.cerniq.ops.plugins.module_utils.redis_keys import (
    STAR, KeyCleaner, RedisKeysError, count_keys, delete_keys, glob_atoms, glob_match, literal_bytes,
    matches_nearly_everything, validate_patterns)
from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.servers import RedisServer, free_port

ODD_MATCHING = [
    b'cache:with space',
    b'cache:"double" and \'single\' quotes',
    b'cache:new\nline\r\n',
    b'cache:\xff\xfe not utf-8 \x00 nul',
    b'cache:*',
    b'cache:?',
    b'cache:[bracket]',
    b'cache:-rf $(rm) `x` ; | xargs',
]
ODD_OTHERS = [
    b'cachex:1',
    b'Cache:1',
    b'other:cache:1',
    b' cache:leading-space',
    b'keep\n*',
    b'\xffcache:',
]


def _keys(client):
    return set(client.scan_iter(count=1000))


def _fill(client, keys, value=b'v'):
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, value)
    pipe.execute()


# -- deleting exactly the matching keys ------------------------------------------------------------

def test_deletes_exactly_matching_keys_with_any_bytes(redis_params, redis_client):
    _fill(redis_client, ODD_MATCHING + ODD_OTHERS)
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*']))
    assert not result.failed, result
    assert result['changed'] is True
    assert result['deleted'] == result['matched'] == len(ODD_MATCHING)
    assert result['patterns'] == {'cache:*': {'matched': len(ODD_MATCHING), 'deleted': len(ODD_MATCHING)}}
    assert _keys(redis_client) == set(ODD_OTHERS)
    # Samples are printable text, whatever the bytes.
    assert 'cache:\\xff\\xfe not utf-8 \x00 nul' in result['sample']
    again = run_module('redis_keys', dict(redis_params, patterns=['cache:*']))
    assert not again.failed and again['changed'] is False
    assert again['matched'] == again['deleted'] == 0
    assert _keys(redis_client) == set(ODD_OTHERS)


def test_escaped_glob_characters_match_literally(redis_params, redis_client):
    _fill(redis_client, [b'lit:*', b'lit:a', b'lit:?', b'lit:b', b'lit:[x]', b'lit:x'])
    result = delete_keys(redis_client, [r'lit:\*', r'lit:\?', r'lit:\[x\]'])
    assert result['deleted'] == 3
    assert _keys(redis_client) == {b'lit:a', b'lit:b', b'lit:x'}


def test_many_pages_and_batches(redis_params, redis_client):
    _fill(redis_client, [b'cache:%d' % i for i in range(3000)] + [b'keep:%d' % i for i in range(500)])
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], scan_count=100, batch_size=7))
    assert not result.failed, result
    assert result['deleted'] == 3000
    assert result['scan_calls'] > 10
    assert redis_client.dbsize() == 500


def test_glob_match_agrees_with_redis(redis_client):
    keys = ODD_MATCHING + ODD_OTHERS + [b'a', b'ab', b'abc', b'a*c', b'a\\c', b'h-llo', b'hallo', b'hxllo',
                                        b'x]y', b'\xe9t\xe9', b'[', b'a[b', b'', b'-']
    _fill(redis_client, [k for k in keys if k])
    patterns = ['cache:*', '*:*', 'a?c', 'a*', '*c', 'h[a-e]llo', 'h[^a]llo', 'h[-]llo', r'a\*c', r'a\\c',
                '[', 'a[', '[]]', 'x[]]y', '*[', '?', '[b-a]*', '\\', 'cache:[*]', 'keep\n[*]',
                b'\xffcache:*', '*\n*', 'h[!e]llo', '**a**']
    for pattern in patterns:
        raw = pattern.encode() if isinstance(pattern, str) else pattern
        server = set(redis_client.scan_iter(match=raw, count=1000))
        local = set(k for k in keys if k and glob_match(raw, k))
        assert local == server, pattern


# -- what a pattern can match: Redis's own matcher, checked against SCAN MATCH ----------------------

# Bytes that are glob syntax, their neighbours, signed-char edges (0x80, 0xff) and NUL.
GLOB_ALPHABET = [b'a', b'b', b'c', b':', b'*', b'?', b'[', b']', b'^', b'!', b'-', b'\\', b'\x00', b'\x80', b'\xff']
# Every key of one to three bytes over that alphabet (3,615 keys), plus the empty key name.
GLOB_CORPUS = [b''] + [b''.join(chars) for size in (1, 2, 3) for chars in itertools.product(GLOB_ALPHABET, repeat=size)]
glob_patterns = st.lists(st.sampled_from(GLOB_ALPHABET), min_size=1, max_size=9).map(b''.join)
GLOB_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope='module')
def glob_server():
    """A server of its own holding GLOB_CORPUS (other tests flush theirs)."""
    with RedisServer() as server:
        client = server.client()
        _fill(client, GLOB_CORPUS)
        yield client
        client.close()


def _server_matches(client, pattern):
    return set(client.scan_iter(match=pattern, count=100000))


def _witness(atoms, avoid):
    """A key the atoms match that does not contain the byte ``avoid`` (None if there is none)."""
    key = b''
    for atom in atoms:
        if atom is STAR:
            continue
        allowed = sorted(atom - {avoid})
        if not allowed:
            return None
        key += bytes([allowed[len(allowed) // 2]])
    if not key:  # only STAR: any one byte will do
        key = b'a' if avoid != ord('a') else b'b'
    return key


@GLOB_SETTINGS
@given(pattern=glob_patterns)
def test_glob_match_is_redis_scan_match(glob_server, pattern):
    """The engine's reading of a pattern is the server's: same keys of the whole corpus, quirks included."""
    assert set(key for key in GLOB_CORPUS if glob_match(pattern, key)) == _server_matches(glob_server, pattern)


@GLOB_SETTINGS
@given(pattern=glob_patterns)
def test_guard_looks_at_what_a_pattern_can_match(glob_server, pattern):
    """Refused: for every byte, the server matches a key without it. Accepted: every match has the literal."""
    atoms = glob_atoms(pattern)
    if matches_nearly_everything(pattern):
        with pytest.raises(RedisKeysError, match='allow_all'):
            validate_patterns([pattern])
        witnesses = set(_witness(atoms, avoid) for avoid in range(256))
        assert None not in witnesses
        _fill(glob_server, witnesses)
        try:
            assert witnesses <= _server_matches(glob_server, pattern)
        finally:
            glob_server.delete(*(witnesses - set(GLOB_CORPUS)) or [b'-none-'])
    else:
        assert validate_patterns([pattern]) == [pattern]
        required = literal_bytes(pattern)
        matched = _server_matches(glob_server, pattern)
        assert all(bytes([byte]) in key for key in matched for byte in required)
        # The guard is about the pattern, not this corpus: a pattern that matches every key of
        # one to three bytes here is one that has no literal byte.
        assert not (set(GLOB_CORPUS[1:]) <= matched)


@pytest.mark.parametrize('stars', [999, 1000, 1001])
def test_star_nesting_limit_as_the_server(glob_server, stars):
    """Past 1,000 STARs before its end a pattern matches nothing on the server (CVE-2024-31228 fix); same here."""
    key = b'a' * 1200
    glob_server.set(key, b'v')
    try:
        for pattern in (b'*a' * stars + b'*', b'*a' * stars):
            assert glob_match(pattern, key) == (key in _server_matches(glob_server, pattern))
    finally:
        glob_server.delete(key)


MATCH_ALL_SPELLINGS = ['*', '**', '?*', '*?', '*?*', '??*', '[^\u0000]*', '[^a]*', '[a-z]*', '[!x]*',
                       '[a-\u00ff]*', '[^]*', '[^', '*[^x]', '[\\x-\\y]*', '*[ab]*[cd]*', '?']


@pytest.mark.parametrize('pattern', MATCH_ALL_SPELLINGS)
def test_match_all_spellings_refused(redis_params, redis_client, pattern):
    """Defect 7: any spelling of "every key" is refused before anything is deleted."""
    keys = [b'a', b'bb', b'cache:1', b'x', b'!x', b'\\xff', b'\x00nul', b'z' * 300]
    _fill(redis_client, keys)
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*', pattern]))
    assert result.failed and 'allow_all' in result['msg'] and '\n' not in result['msg'], result
    assert redis_client.dbsize() == len(keys)
    checked = run_module('redis_keys', dict(redis_params, patterns=[pattern]), check_mode=True)
    assert checked.failed and 'allow_all' in checked['msg']


def test_long_refused_pattern_is_shortened_in_the_message(redis_params):
    result = run_module('redis_keys', dict(redis_params, patterns=['[' * 50000 + '*']))
    assert result.failed and 'allow_all' in result['msg'] and '(50001 characters)' in result['msg']
    assert len(result['msg']) < 500


@pytest.mark.parametrize('pattern, deleted', [
    ('\\*', [b'*']), ('[*]', [b'*']), ('[c]ache:*', [b'cache:1']), ('*:lock', [b'bull:q:1:lock']),
    ('[^\u0000]*1', [b'cache:1', b'bull:q:1', b'zz:1']), ('??:*', [b'zz:1']),
])
def test_patterns_with_a_literal_part_run(redis_params, redis_client, pattern, deleted):
    _fill(redis_client, [b'*', b'a', b'bb', b'cache:1', b'bull:q:1:lock', b'bull:q:1', b'zz:1'])
    result = run_module('redis_keys', dict(redis_params, patterns=[pattern]))
    assert not result.failed, result
    assert result['deleted'] == len(deleted)
    assert not set(deleted) & _keys(redis_client)


# -- check mode, count, samples --------------------------------------------------------------------

def test_check_mode_counts_and_deletes_nothing(redis_params, redis_client):
    _fill(redis_client, [b'cache:%d' % i for i in range(50)] + [b'other:%d' % i for i in range(5)])
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], sample_size=3), check_mode=True)
    assert not result.failed, result
    assert result['changed'] is True
    assert result['matched'] == 50 and result['deleted'] == 0
    assert len(result['sample']) == 3 and all(s.startswith('cache:') for s in result['sample'])
    assert redis_client.dbsize() == 55

    counted = run_module('redis_keys_info', dict(redis_params, patterns=['cache:*'], sample_size=3))
    assert not counted.failed, counted
    assert counted['changed'] is False and counted['matched'] == 50 and 'deleted' not in counted
    assert counted['patterns'] == {'cache:*': {'matched': 50}} and len(counted['sample']) == 3
    assert counted['elapsed_seconds'] >= 0
    assert redis_client.dbsize() == 55
    assert run_module('redis_keys', dict(redis_params, patterns=['cache:*'], state='count')).failed   # 1.0: info

    none = run_module('redis_keys', dict(redis_params, patterns=['nothing:*']), check_mode=True)
    assert none['changed'] is False and none['matched'] == 0


def test_overlapping_patterns_counted_once(redis_params, redis_client):
    _fill(redis_client, [b'cache:user:%d' % i for i in range(30)] + [b'cache:x:%d' % i for i in range(20)]
          + [b'session:expired:%d' % i for i in range(10)])
    patterns = ['cache:*', 'cache:user:*', 'session:expired:*']
    checked = run_module('redis_keys', dict(redis_params, patterns=patterns), check_mode=True)
    assert checked['matched'] == 60
    assert checked['patterns'] == {'cache:*': {'matched': 50, 'deleted': 0},
                                   'cache:user:*': {'matched': 0, 'deleted': 0},
                                   'session:expired:*': {'matched': 10, 'deleted': 0}}
    done = run_module('redis_keys', dict(redis_params, patterns=patterns))
    assert done['deleted'] == done['matched'] == 60
    assert done['patterns']['cache:*']['deleted'] == 50
    assert redis_client.dbsize() == 0


def test_runbook_session_expired_cleanup(redis_params, redis_client):
    """Runbook 3.1 step 4: cache:* and session:expired:* go, live sessions stay."""
    _fill(redis_client, [b'cache:company:%d' % i for i in range(200)]
          + [b'session:expired:%d' % i for i in range(100)]
          + [b'session:active:%d' % i for i in range(40)]
          + [b'bull:enrichment:%d' % i for i in range(25)])
    args = dict(redis_params, patterns=['cache:*', 'session:expired:*'], max_keys=300, scan_count=50)
    result = run_module('redis_keys', args)
    assert not result.failed, result
    assert result['deleted'] == result['matched'] == 300
    assert result['counted_first'] is True and result['guard'] == 'counted'
    assert result['patterns']['session:expired:*'] == {'matched': 100, 'deleted': 100}
    assert sorted(set(k.split(b':')[0] + b':' + k.split(b':')[1] for k in _keys(redis_client))) == [
        b'bull:enrichment', b'session:active']
    assert run_module('redis_keys', args)['changed'] is False


# -- max_keys guard --------------------------------------------------------------------------------

def test_max_keys_refuses_before_deleting_anything(redis_params, redis_client):
    _fill(redis_client, [b'cache:%d' % i for i in range(20)])
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], max_keys=19, scan_count=3))
    assert result.failed
    assert 'refused' in result['msg'] and 'max_keys=19' in result['msg'] and '\n' not in result['msg']
    assert result['matched'] == 20 and result['deleted'] == 0 and result['changed'] is False
    assert redis_client.dbsize() == 20
    ok = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], max_keys=20))
    assert not ok.failed and ok['deleted'] == 20


def test_max_keys_counts_with_filters(redis_params, redis_client):
    _fill(redis_client, [b'cache:%d' % i for i in range(20)])
    for i in range(15):
        redis_client.expire(b'cache:%d' % i, 600)
    # 5 keys have no TTL: within max_keys=5 once the filter applies.
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], max_keys=5, no_ttl_only=True))
    assert not result.failed, result
    assert result['deleted'] == 5
    assert redis_client.dbsize() == 15


@pytest.mark.parametrize('filtered', [False, True])
def test_delete_pass_never_exceeds_max_keys(redis_client, filtered):
    """Keys added between the counting pass and the delete pass are never deleted beyond max_keys."""
    _fill(redis_client, [b'cache:%d' % i for i in range(40)])
    options = dict(no_ttl_only=True) if filtered else {}
    cleaner = KeyCleaner(redis_client, ['cache:*'], max_keys=25, scan_count=10, batch_size=4, **options)
    result = cleaner._empty_result()
    # The delete pass as run() calls it when DBSIZE was within max_keys and keys were added since.
    cleaner._scan(cleaner._nodes(), result, apply=True, budget=25)
    assert result['deleted'] == 25
    assert result['matched'] >= 25 and result['limit_reached'] is True
    assert redis_client.dbsize() == 15


def test_guard_needs_no_count_when_the_database_is_small_enough(redis_params, redis_client):
    """DBSIZE <= max_keys: no key can be over the limit, so no counting pass runs."""
    _fill(redis_client, [b'cache:%d' % i for i in range(20)] + [b'keep:%d' % i for i in range(10)])
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], max_keys=30, scan_count=10))
    assert not result.failed, result
    assert result['guard'] == 'dbsize' and result['counted_first'] is False
    assert result['deleted'] == result['matched'] == 20 and redis_client.dbsize() == 10
    counted = run_module('redis_keys', dict(redis_params, patterns=['keep:*'], max_keys=9))
    assert counted.failed and 'refused' in counted['msg'] and redis_client.dbsize() == 10


def test_guard_refusal_stops_counting_early(redis_params, redis_client):
    """A pattern matching far more than max_keys is refused after a few pages, not a whole scan."""
    _fill(redis_client, [b'cache:%d' % i for i in range(5000)])
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], max_keys=10, scan_count=100))
    assert result.failed and 'more than max_keys=10' in result['msg'] and 'nothing was deleted' in result['msg']
    assert 10 < result['matched'] < 1000 and result['scan_calls'] < 20 and result['deleted'] == 0
    assert redis_client.dbsize() == 5000


def test_guard_deletes_only_what_it_counted(redis_client):
    """Between the counting pass and the delete pass: keys added are left, keys changed are checked again."""
    _fill(redis_client, [b'cache:%d' % i for i in range(300)] + [b'keep:%d' % i for i in range(100)])
    redis_client.hset(b'cache:hash', b'f', b'v')
    cleaner = KeyCleaner(redis_client, ['cache:*'], max_keys=301, key_type='string', no_ttl_only=True,
                         scan_count=50, batch_size=7)
    nodes, result = cleaner._nodes(), cleaner._empty_result()
    import tempfile
    with tempfile.SpooledTemporaryFile() as spool:
        cleaner._scan(nodes, result, apply=False, spool=spool, stop_above=301)
        assert result['matched'] == 300 and redis_client.dbsize() == 401  # the hash is not a string
        redis_client.delete(b'cache:0', b'cache:1')                   # gone meanwhile
        redis_client.expire(b'cache:2', 600)                          # now has a TTL: kept
        redis_client.delete(b'cache:3')
        redis_client.rpush(b'cache:3', b'x')                          # now a list: kept
        _fill(redis_client, [b'cache:new:%d' % i for i in range(5)])  # added: not counted, kept
        cleaner._delete_kept(nodes, result, spool)
    assert result['deleted'] == 300 - 4 and result['patterns']['cache:*']['deleted'] == 296
    assert _keys(redis_client) == ({b'cache:2', b'cache:3', b'cache:hash'} | {b'cache:new:%d' % i for i in range(5)}
                                   | {b'keep:%d' % i for i in range(100)})


def test_guard_names_of_any_bytes_and_length_spill_to_disk(redis_params, redis_client, monkeypatch):
    """Names kept by the counting pass survive any byte and length (cmsgpack str8/16/32) and a spilled spool."""
    from ansible_collections.cerniq.ops.plugins.module_utils import redis_keys
    monkeypatch.setattr(redis_keys, 'SPOOL_IN_MEMORY', 64)
    matching = ODD_MATCHING + [b'cache:' + b'x' * 40, b'cache:' + b'y' * 300, b'cache:' + b'\xfe\x00' * 40000]
    matching += [b'cache:%d' % i for i in range(500)]
    _fill(redis_client, matching + ODD_OTHERS)
    result = delete_keys(redis_client, ['cache:*'], max_keys=len(matching), scan_count=20)
    assert result['guard'] == 'counted' and result['deleted'] == result['matched'] == len(matching)
    assert _keys(redis_client) == set(ODD_OTHERS)


# -- filters ---------------------------------------------------------------------------------------

def test_key_type_filter(redis_params, redis_client):
    redis_client.set(b'cache:s', b'1')
    redis_client.hset(b'cache:h', b'f', b'1')
    redis_client.rpush(b'cache:l', b'1')
    redis_client.zadd(b'cache:z', {b'm': 1})
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], key_type='hash'))
    assert not result.failed and result['deleted'] == 1
    assert _keys(redis_client) == {b'cache:s', b'cache:l', b'cache:z'}
    # Type together with another filter goes through the atomic script.
    redis_client.expire(b'cache:l', 600)
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], key_type='list', no_ttl_only=True))
    assert result['deleted'] == 0 and b'cache:l' in _keys(redis_client)
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], key_type='zset', no_ttl_only=True))
    assert result['deleted'] == 1 and _keys(redis_client) == {b'cache:s', b'cache:l'}


def test_no_ttl_only_filter(redis_params, redis_client):
    _fill(redis_client, [b'cache:%d' % i for i in range(10)])
    for i in range(4):
        redis_client.expire(b'cache:%d' % i, 600)
    checked = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], no_ttl_only=True), check_mode=True)
    assert checked['matched'] == 6 and redis_client.dbsize() == 10
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], no_ttl_only=True))
    assert result['deleted'] == 6
    assert _keys(redis_client) == {b'cache:%d' % i for i in range(4)}
    assert run_module('redis_keys', dict(redis_params, patterns=['cache:*'], no_ttl_only=True))['changed'] is False


def test_min_idle_time_filter(redis_params, redis_client):
    """Idle times set with RESTORE ... IDLETIME: no sleeping, no dependence on how fast the run is."""
    redis_client.set(b'x', b'v')
    payload = redis_client.dump(b'x')
    redis_client.delete(b'x')
    for i in range(7):
        redis_client.restore(b'cache:old:%d' % i, 0, payload, idletime=7200)
    _fill(redis_client, [b'cache:new:%d' % i for i in range(3)])
    redis_client.restore(b'cache:hour', 0, payload, idletime=3500)
    assert redis_client.object('idletime', b'cache:old:0') >= 7200
    args = dict(redis_params, patterns=['cache:*'], min_idle_time='1h')
    checked = run_module('redis_keys', args, check_mode=True)
    assert checked['matched'] == 7 and redis_client.dbsize() == 11
    assert run_module('redis_keys_info', args)['matched'] == 7
    result = run_module('redis_keys', args)
    assert not result.failed, result
    assert result['deleted'] == 7
    assert _keys(redis_client) == {b'cache:new:0', b'cache:new:1', b'cache:new:2', b'cache:hour'}
    # Reading a key resets its idle time: it is no longer a candidate.
    redis_client.restore(b'cache:read', 0, payload, idletime=7200)
    redis_client.get(b'cache:read')
    assert run_module('redis_keys', args)['changed'] is False


# -- bad input, errors -----------------------------------------------------------------------------

@pytest.mark.parametrize('args, message', [
    (dict(patterns=['*']), 'allow_all'),
    (dict(patterns=['cache:*', '**']), 'allow_all'),
    (dict(patterns=['']), 'empty pattern'),
    (dict(patterns=[]), 'patterns is empty'),
    (dict(patterns=['cache:*'], scan_count=0), 'scan_count'),
    (dict(patterns=['cache:*'], batch_size=-1), 'batch_size'),
    (dict(patterns=['cache:*'], batch_size=6000), 'batch_size'),
    (dict(patterns=['cache:*'], max_keys=-1), 'max_keys'),
    (dict(patterns=['cache:*'], min_idle_time='-5s'), 'min_idle_time'),
    (dict(patterns=['cache:*'], min_idle_time=3600), "min_idle_time: '3600' is not a duration with a unit"),
    (dict(patterns=['cache:*'], min_idle_time='600 weeks'), 'min_idle_time must be between 0s and 3650d'),
    (dict(patterns=['cache:*'], key_type='bogus'), 'key_type'),
])
def test_bad_input_fails_and_changes_nothing(redis_params, redis_client, args, message):
    _fill(redis_client, [b'cache:1', b'other:1'])
    result = run_module('redis_keys', dict(redis_params, **args))
    assert result.failed and message in result['msg'], result
    assert redis_client.dbsize() == 2


def test_allow_all(redis_params, redis_client):
    _fill(redis_client, [b'a', b'b c', b'\xff'])
    result = run_module('redis_keys', dict(redis_params, patterns=['*'], allow_all=True))
    assert not result.failed and result['deleted'] == 3 and redis_client.dbsize() == 0


def test_engine_rejects_bad_options(redis_client):
    with pytest.raises(RedisKeysError, match='allow_all'):
        delete_keys(redis_client, '*')
    with pytest.raises(RedisKeysError, match='sample_size'):
        count_keys(redis_client, ['x:*'], sample_size=5000)


def test_idle_filter_with_lfu_policy_is_a_clear_error(redis_params, redis_client):
    _fill(redis_client, [b'cache:1'])
    redis_client.config_set('maxmemory-policy', 'allkeys-lfu')
    try:
        result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], min_idle_time='1s'))
    finally:
        redis_client.config_set('maxmemory-policy', 'noeviction')
    assert result.failed and 'LFU' in result['msg'] and '\n' not in result['msg']
    assert redis_client.dbsize() == 1


def test_redis_down_is_one_line_error():
    result = run_module('redis_keys', dict(redis_host='127.0.0.1', redis_port=free_port(), patterns=['cache:*'],
                                           redis_socket_timeout='2s'))
    assert result.failed
    assert 'server unreachable' in result['msg'] and '\n' not in result['msg']


def test_cluster_flag_against_a_single_server_is_one_line(redis_params, redis_client):
    """Defect 12: redis_cluster=true on a server without cluster mode was a traceback."""
    _fill(redis_client, [b'cache:1'])
    result = run_module('redis_keys', dict(redis_params, patterns=['cache:*'], redis_cluster=True))
    assert result.failed and 'not a Redis Cluster node' in result['msg'] and '\n' not in result['msg'], result
    assert 'Traceback' not in result.stderr
    assert redis_client.dbsize() == 1


@pytest.mark.parametrize('option, value, message', [
    ('redis_port', 0, 'redis_port must be from 1 to 65535'),
    ('redis_port', 70000, 'redis_port must be from 1 to 65535'),
    ('redis_db', -1, 'redis_db must be from 0'),
    ('redis_socket_timeout', '0s', 'redis_socket_timeout must be between 1ms and 1h'),
    ('redis_socket_timeout', 5, 'redis_socket_timeout: \'5\' is not a duration with a unit'),
    ('redis_sentinel_nodes', ['127.0.0.1:99999'], 'invalid sentinel node'),
    ('scan_count', 100001, 'scan_count must be between 1 and 100000'),
    ('sample_size', -1, 'sample_size'),
    ('max_keys', -5, 'max_keys'),
])
def test_bad_options_refused_before_connecting(option, value, message):
    """Checked before any connection: the server named here does not exist (a connection would time out)."""
    args = dict(redis_host='192.0.2.1', redis_socket_timeout='30s', patterns=['cache:*'])
    if option == 'redis_sentinel_nodes':
        args['redis_sentinel_master'] = 'mymaster'
    args[option] = value
    started = time.monotonic()
    result = run_module('redis_keys', args)
    assert result.failed and message in result['msg'] and '\n' not in result['msg'], result
    assert 'Traceback' not in result.stderr
    assert time.monotonic() - started < 20


def test_wrong_password_is_one_line_error(redis_auth_server):
    client = redis_auth_server.client()
    client.set(b'cache:1', b'v')
    result = run_module('redis_keys', dict(redis_auth_server.params(redis_password='wrong-pass'),
                                           patterns=['cache:*']))
    assert result.failed and 'authentication failed' in result['msg'] and '\n' not in result['msg']
    assert 'wrong-pass' not in result['msg'] and 's3cret' not in result['msg']
    assert client.exists(b'cache:1') == 1
    ok = run_module('redis_keys', dict(redis_auth_server.params(), patterns=['cache:*']))
    assert not ok.failed and ok['deleted'] == 1
    client.close()


# -- Redis Cluster ---------------------------------------------------------------------------------

@pytest.fixture
def cluster_client(redis_cluster):
    from redis.cluster import RedisCluster
    client = RedisCluster(host='127.0.0.1', port=redis_cluster.port)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()


def _cluster_keys(client):
    from redis.cluster import RedisCluster
    keys = set()
    for node in client.get_primaries():
        keys.update(client.get_redis_connection(node).scan_iter(count=1000))
    assert client.dbsize(target_nodes=RedisCluster.PRIMARIES) == len(keys)
    return keys


def test_cluster_deletes_on_every_master(redis_cluster, cluster_client):
    matching = [b'cache:%d' % i for i in range(600)] + [b'cache:{tag}:%d' % i for i in range(50)] + ODD_MATCHING
    others = [b'keep:%d' % i for i in range(100)] + ODD_OTHERS
    for key in matching + others:
        cluster_client.set(key, b'v')
    # The keys really are spread over the three masters.
    per_node = [cluster_client.get_redis_connection(n).dbsize() for n in cluster_client.get_primaries()]
    assert len(per_node) == 3 and all(count > 0 for count in per_node)

    args = dict(redis_cluster.params(), patterns=['cache:*'], batch_size=50, scan_count=100)
    checked = run_module('redis_keys', args, check_mode=True)
    assert not checked.failed, checked
    assert checked['matched'] == len(matching) and checked['nodes'] == 3
    assert len(_cluster_keys(cluster_client)) == len(matching) + len(others)

    result = run_module('redis_keys', dict(args, max_keys=len(matching)))
    assert not result.failed, result
    assert result['deleted'] == len(matching)
    assert _cluster_keys(cluster_client) == set(others)
    assert run_module('redis_keys', args)['changed'] is False


def test_cluster_filters_and_refusal(redis_cluster, cluster_client):
    for i in range(90):
        cluster_client.set(b'session:expired:%d' % i, b'v')
    for i in range(30):
        cluster_client.expire(b'session:expired:%d' % i, 600)
    refused = run_module('redis_keys', dict(redis_cluster.params(), patterns=['session:expired:*'], max_keys=10))
    assert refused.failed and 'refused' in refused['msg'] and 10 < refused['matched'] <= 90
    assert len(_cluster_keys(cluster_client)) == 90
    result = run_module('redis_keys', dict(redis_cluster.params(), patterns=['session:expired:*'], no_ttl_only=True))
    assert not result.failed, result
    assert result['deleted'] == 60
    assert _cluster_keys(cluster_client) == {b'session:expired:%d' % i for i in range(30)}


def test_engine_on_cluster_client(redis_cluster, cluster_client):
    from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import connect_redis
    client = connect_redis(redis_cluster.params())
    for i in range(100):
        cluster_client.set(b'cache:%d' % i, b'v')
    assert count_keys(client, ['cache:*'])['matched'] == 100
    assert delete_keys(client, ['cache:*'], key_type='string')['deleted'] == 100
    assert _cluster_keys(cluster_client) == set()
    client.close()


def test_server_error_mid_run_is_reported(redis_params, redis_client):
    """A server-side error (here: the Lua filter on an LFU server) leaves a one-line message."""
    _fill(redis_client, [b'cache:1'])
    redis_client.config_set('maxmemory-policy', 'volatile-lfu')
    try:
        with pytest.raises(RedisKeysError) as raised:
            delete_keys(redis_client, ['cache:*'], min_idle_time='0s')
    finally:
        redis_client.config_set('maxmemory-policy', 'noeviction')
    assert 'Redis error after deleting 0 keys' in str(raised.value)
    assert raised.value.result['deleted'] == 0
    assert '\n' not in str(raised.value)


@pytest.mark.parametrize('size', [20, 3000])
def test_guard_dbsize_path_deletes_every_key(redis_params, redis_client, size):
    """DBSIZE == max_keys: no counting pass, and the budget of the delete pass lets every key go."""
    _fill(redis_client, [b'cache:%d' % i for i in range(size)])
    for scan_count in (1000, 10):
        result = delete_keys(redis_client, ['cache:*'], max_keys=size, scan_count=scan_count)
        assert result['guard'] == 'dbsize' and result['deleted'] == result['matched'] == size, result
        assert result['limit_reached'] is False and redis_client.dbsize() == 0
        _fill(redis_client, [b'cache:%d' % i for i in range(size)])


def test_guard_with_overlapping_patterns_deletes_exactly_the_matching_keys(redis_params, redis_client):
    """Kept names of a later pattern include keys an earlier one matched: every kept batch stays well formed."""
    keys = ([b'cache:user:%d' % i for i in range(30)] + [b'cache:x:%d' % i for i in range(20)]
            + [b'cache:user:FLUSHALL', b'FLUSHALL', b'cache:user:PING\r\nFLUSHALL\r\n'])
    _fill(redis_client, keys + [b'keep:%d' % i for i in range(60)])
    patterns = ['cache:*', 'cache:user:*', 'cache:user:[F]*']
    result = run_module('redis_keys', dict(redis_params, patterns=patterns, max_keys=52, scan_count=7))
    assert not result.failed, result
    assert result['guard'] == 'counted'
    assert result['matched'] == result['deleted'] == 52
    assert result['patterns']['cache:*'] == {'matched': 52, 'deleted': 52}
    assert result['patterns']['cache:user:*'] == {'matched': 0, 'deleted': 0}
    assert _keys(redis_client) == {b'FLUSHALL'} | {b'keep:%d' % i for i in range(60)}
