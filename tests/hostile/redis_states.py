"""Corrupt Redis states for the hostile layer: BullMQ queues with broken jobs and keys, circuit breakers and
plain keys of every type, as Hypothesis strategies of plain data plus ``seed(client, state)``.

A drawn state is a dict that prints readably in a falsifying example:
``queues``: per queue its prefix, name, meta (version, paused), jobs (id, state, corruption) and keys
forced to a wrong type; ``breakers``: per source its state/failures/rate-limit values or wrong types;
``plain``: other keys (some with odd names) that no run may touch unless it targets them.
"""

from hypothesis import strategies as st

# Hostile values of the connection options, drawn for one run in twenty (argspec.module_args).
REDIS_CONNECTION_HOSTILE = {
    'redis_db': st.sampled_from([-1, 16, 2 ** 31, 1]),
    'redis_socket_timeout': st.sampled_from([0.0, -1.0, float('nan'), '0s', '5', '1 day', '0.0001ms']),
    'redis_cluster': st.just(True),
    'redis_tls': st.just(True),
    'redis_ca_certs': st.just('/nonexistent/ca.pem'),
    'redis_sentinel_master': st.sampled_from(['mymaster', '']),
    'redis_sentinel_nodes': st.sampled_from([['127.0.0.1:1'], ['bad'], ['[::1]:x']]),
    'redis_port': st.sampled_from([0, -1, 70000, 1]),
    'redis_host': st.sampled_from(['', 'host.invalid', '256.1.1.1']),
    'redis_username': st.sampled_from(['nobody', '']),
}


LIST_STATES = ('wait', 'paused', 'active')
ZSET_STATES = ('prioritized', 'delayed', 'completed', 'failed', 'waiting-children')
STATES = LIST_STATES + ZSET_STATES
QUEUE_KEYS = ('meta', 'marker', 'stalled', 'events', 'id')
JOB_CORRUPTIONS = ('none', 'none', 'none', 'string_key', 'missing_hash', 'bad_stc', 'bad_attempts',
                   'bad_times', 'locked', 'list_key', 'empty_hash')
WRONG_TYPE_VALUES = ('string', 'list', 'hash', 'set', 'zset')
QUEUES = (('bull', 'q1'), ('bull', 'q2'), ('cq', 'q3'), ('{bull}', 'tagged'), ('bull', 'odd:name ț'))
VERSIONS = (None, 'bullmq:5.56.0', 'bullmq:5.40.0', 'bullmq:5.52.0', 'bullmq:6.0.1', 'bullmq:abc', '', 'x' * 50)
JOB_IDS = ('1', '2', '3', '4', '5', '6', '7', '8', '9', '10', 'a:b', 'ț', '*', 'repeat:x:1', '0', '-1', 'long-' + 'x' * 60)


@st.composite
def queue_state(draw, prefix, name):
    jobs = draw(st.lists(st.tuples(st.sampled_from(JOB_IDS), st.sampled_from(STATES),
                                   st.sampled_from(JOB_CORRUPTIONS)), max_size=8, unique_by=lambda j: j[0]))
    duplicates = draw(st.lists(st.sampled_from([j[0] for j in jobs]), max_size=2)) if jobs else []
    return dict(prefix=prefix, name=name, version=draw(st.sampled_from(VERSIONS)), paused=draw(st.booleans()),
                jobs=jobs, duplicate_active=duplicates,
                wrong_keys=draw(st.lists(st.tuples(st.sampled_from(STATES + QUEUE_KEYS), st.sampled_from(WRONG_TYPE_VALUES)),
                                         max_size=1)),
                stalled_check=draw(st.sampled_from([None, '1', 'abc'])))


@st.composite
def bullmq_states(draw):
    chosen = draw(st.lists(st.sampled_from(QUEUES), min_size=1, max_size=2, unique=True))
    return dict(queues=[draw(queue_state(prefix, name)) for prefix, name in chosen],
                plain=draw(plain_keys()))


@st.composite
def plain_keys(draw):
    names = ['a', 'zz:1', 'ț:key', 'cache:x', 'sess:{u1}:1', ' space', 'bull:q1', 'circuit:anaf:state:old']
    chosen = draw(st.lists(st.sampled_from(names), max_size=5, unique=True))
    out = [(name, draw(st.sampled_from(WRONG_TYPE_VALUES)), draw(st.booleans()), draw(st.sampled_from([0, 0, 1])))
           for name in chosen]
    out += [(b'\xff\xfe-binary', 'string', False, 0), ('always', 'hash', False, 0)]
    return out


SOURCES = ('anaf', 'termene', 'ț', 'a:b', '{x}')
BREAKER_STATES = (None, 'OPEN', 'open', 'CLOSED', 'HALF_OPEN', '', 'x' * 100)


@st.composite
def breaker_states(draw):
    breakers = []
    for source in draw(st.lists(st.sampled_from(SOURCES), min_size=1, max_size=3, unique=True)):
        breakers.append(dict(source=source, state=draw(st.sampled_from(BREAKER_STATES)),
                             failures=draw(st.sampled_from([None, '3', 'abc', '-1', '99999999999999999999'])),
                             remaining=draw(st.sampled_from([None, '10', 'x'])),
                             wrong_type=draw(st.sampled_from([None, None, 'state', 'failures', 'rate_limit'])),
                             ttl=draw(st.booleans())))
    return dict(breakers=breakers, plain=draw(plain_keys()))


def _set_wrong(pipe, key, kind):
    pipe.delete(key)
    if kind == 'string':
        pipe.set(key, 'x')
    elif kind == 'list':
        pipe.rpush(key, 'x')
    elif kind == 'hash':
        pipe.hset(key, 'x', '1')
    elif kind == 'set':
        pipe.sadd(key, 'x')
    else:
        pipe.zadd(key, {'x': 1})


def _job_hash(job_id, state, now):
    fields = dict(name='job-%s' % job_id, data='{}', opts='{"attempts":3}', timestamp=now - 600000,
                  attemptsMade=0, stc=0, priority=0, delay=0)
    if state in ('active', 'completed', 'failed'):
        fields['processedOn'] = now - 500000
    if state in ('completed', 'failed'):
        fields['finishedOn'] = now - 400000
    if state == 'failed':
        fields['failedReason'] = 'boom'
    if state == 'prioritized':
        fields['priority'] = 5
    return fields


def seed_queue(pipe, queue, now):
    base = '%s:%s:' % (queue['prefix'], queue['name'])
    meta = {}
    if queue['version'] is not None:
        meta['version'] = queue['version']
    if queue['paused']:
        meta['paused'] = 1
    meta['opts.maxLenEvents'] = 100
    pipe.hset(base + 'meta', mapping=meta)
    pipe.set(base + 'id', len(queue['jobs']))
    for job_id, state, corruption in queue['jobs']:
        key = base + job_id
        if corruption == 'string_key':
            pipe.set(key, 'not a job')
        elif corruption == 'list_key':
            pipe.rpush(key, 'not a job')
        elif corruption == 'empty_hash':
            pipe.hset(key, 'x', '')
        elif corruption != 'missing_hash':
            fields = _job_hash(job_id, state, now)
            if corruption == 'bad_stc':
                fields.update(stc='abc', stalledCounter='x')
            elif corruption == 'bad_attempts':
                fields.update(attemptsMade='many', opts='{not json')
            elif corruption == 'bad_times':
                fields.update(timestamp='yesterday', processedOn='-', finishedOn='1e999')
            pipe.hset(key, mapping=fields)
            if corruption == 'locked':
                pipe.set(key + ':lock', 'worker-token', px=600000)
        if state in LIST_STATES:
            pipe.rpush(base + state, job_id)
        else:
            score = {'delayed': (now - 1000) * 4096, 'prioritized': 5 * 2 ** 32}.get(state, now - 400000)
            pipe.zadd(base + state, {job_id: score})
    for job_id in queue['duplicate_active']:
        pipe.rpush(base + 'active', job_id)
    if queue['stalled_check'] is not None:
        pipe.set(base + 'stalled-check', queue['stalled_check'])
    for kind, wrong in queue['wrong_keys']:
        _set_wrong(pipe, base + kind, wrong)


def seed_plain(pipe, plain):
    for name, kind, with_ttl, db in plain:
        if db:
            continue
        _set_wrong(pipe, name, kind)
        if with_ttl:
            pipe.pexpire(name, 3600000)


def seed(client, state):
    """Write ``state`` into an empty server (database 0; plain keys marked for db 1 go there)."""
    seconds, micros = client.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    pipe = client.pipeline(transaction=False)
    for queue in state.get('queues', []):
        seed_queue(pipe, queue, now)
    for breaker in state.get('breakers', []):
        seed_breaker(pipe, breaker)
    seed_plain(pipe, state.get('plain', []))
    pipe.execute()
    other = [p for p in state.get('plain', []) if p[3]]
    if other:
        client.execute_command('SELECT', 1)
        try:
            pipe = client.pipeline(transaction=False)
            for name, kind, with_ttl, _db in other:
                _set_wrong(pipe, name, kind)
            pipe.execute()
        finally:
            client.execute_command('SELECT', 0)


def seed_breaker(pipe, breaker):
    keys = dict(state='circuit:%s:state' % breaker['source'], failures='circuit:%s:failures' % breaker['source'],
                rate_limit='rate_limit:%s:remaining' % breaker['source'])
    for kind, value in (('state', breaker['state']), ('failures', breaker['failures']),
                        ('rate_limit', breaker['remaining'])):
        if breaker['wrong_type'] == kind:
            _set_wrong(pipe, keys[kind], 'hash')
        elif value is not None:
            pipe.set(keys[kind], value, px=600000 if breaker['ttl'] else None)


def job_view(client, state):
    """``{(prefix, name): {state: sorted members}}`` for the seeded queues (what a job-moving run may change)."""
    view = {}
    for queue in state.get('queues', []):
        base = '%s:%s:' % (queue['prefix'], queue['name'])
        entry = {}
        for kind in STATES:
            key = base + kind
            found = client.type(key)
            if found == b'list':
                entry[kind] = sorted(client.lrange(key, 0, -1))
            elif found == b'zset':
                entry[kind] = sorted(client.zrange(key, 0, -1))
            elif found != b'none':
                entry[kind] = 'type %s' % found.decode()
        view[(queue['prefix'], queue['name'])] = entry
    return view
