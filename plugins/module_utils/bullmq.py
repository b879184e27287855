# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BullMQ queues in Redis: key model, inspection and safe, batched repair.

Plain Python (redis-py only): modules, benchmarks and tests call the same code.

Rules kept everywhere:
- keys are built from prefix + name, never split on ``:``;
- named queues are read with direct commands; SCAN is used only to discover queues;
- memory and the duration of every Redis call are bounded by ``batch_size``
  (LRANGE windows, ZRANGEBYSCORE ... LIMIT, one Lua call per batch);
- every write is one of our Lua scripts, which re-checks its preconditions atomically: the key
  types and meta fields before its first write, each job before it leaves its source list or set
  (see bullmq_lua); a job that fails its check stays where it was and is reported in
  ``corrupt_jobs`` with the reason, and the other jobs still move;
- check mode reads only (read-only scripts with the same checks) and reports what would change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import re
import time

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils import bullmq_lua
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import is_cluster

try:
    from redis.exceptions import ResponseError
except ImportError:  # pragma: no cover - the connection layer reports the missing library
    ResponseError = Exception

STATES = ('wait', 'paused', 'active', 'prioritized', 'delayed', 'completed', 'failed', 'waiting-children')

# Known keys of a queue and the Redis type each must have.
KEY_TYPES = {
    'wait': 'list', 'paused': 'list', 'active': 'list',
    'prioritized': 'zset', 'delayed': 'zset', 'completed': 'zset', 'failed': 'zset',
    'waiting-children': 'zset', 'marker': 'zset', 'repeat': 'zset',
    'stalled': 'set', 'meta': 'hash', 'events': 'stream',
    'id': 'string', 'pc': 'string', 'stalled-check': 'string',
}

STALLED_REASON = 'job stalled more than allowable limit'
# A repair call stops taking jobs once it has run this long (ms), so it stays short on any machine.
CALL_BUDGET_MS = 20
# Refusal prefix of our Lua scripts (an error reply before their first write).
LUA_REFUSAL = 'refusing: '
# A meta count (opts.maxLenEvents, concurrency): what bullmq_lua's isCount accepts.
COUNT_PATTERN = re.compile(r'^(0|[1-9][0-9]{0,15})$')
DEFAULT_MAX_EVENTS = 10000
SAMPLE_SIZE = 20


class BullMQError(EngineError):
    """A refusal or failure with a one-line, human-readable message."""


class QueueNotFound(BullMQError):
    """No key of the queue exists (wrong prefix or name, or the queue was never used)."""


def _text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return str(value)


def parse_version(text):
    """``'bullmq:5.49.1'`` -> ``(5, 49, 1)``; None when there is no parsable version."""
    if not text:
        return None
    match = re.search(r'(\d+)\.(\d+)(?:\.(\d+))?', _text(text).rsplit(':', 1)[-1])
    if not match:
        return None
    return tuple(int(part or 0) for part in match.groups())


class QueueKeys(object):
    """Key names of one queue: ``<prefix>:<name>:<type>`` and job keys ``<prefix>:<name>:<id>``."""

    def __init__(self, prefix, name):
        if not prefix or not isinstance(prefix, str):
            raise BullMQError('prefix must be a non-empty string')
        if not name or not isinstance(name, str):
            raise BullMQError('queue name must be a non-empty string')
        self.prefix = prefix
        self.name = name
        self.base = '%s:%s:' % (prefix, name)

    def __getitem__(self, kind):
        return (self.base + kind).encode('utf-8')

    def job(self, job_id):
        if isinstance(job_id, bytes):
            return self.base.encode('utf-8') + job_id
        return (self.base + job_id).encode('utf-8')

    def lock(self, job_id):
        return self.job(job_id) + b':lock'

    @property
    def job_prefix(self):
        return self.base.encode('utf-8')


def hash_tag(key):
    """The hash tag Redis Cluster slots ``key`` by (the text in its first ``{...}``), or None."""
    opening = key.find('{')
    closing = key.find('}', opening + 1) if opening >= 0 else -1
    return key[opening + 1:closing] if closing > opening + 1 else None


def server_time_ms(client):
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _glob_escape(text):
    return re.sub(r'([\\*?\[\]])', r'\\\1', text)


def discover_queues(client, prefix, count=1000):
    """Names of the queues under ``prefix`` (SCAN for ``<prefix>:*:meta`` hashes); sorted."""
    pattern = _glob_escape(prefix) + ':*:meta'
    head = (prefix + ':').encode('utf-8')
    names = set()
    for key in client.scan_iter(match=pattern, count=count):
        if not key.startswith(head) or not key.endswith(b':meta'):
            continue
        name = key[len(head):-len(b':meta')]
        if not name:
            continue
        # A job hash whose id ends in ':meta' also matches; queue meta hashes carry no job fields.
        if client.type(key) != b'hash' or client.hexists(key, 'timestamp') or client.hexists(key, 'data'):
            continue
        names.add(name.decode('utf-8', 'replace'))
    return sorted(names)


class Queue(object):
    """One BullMQ queue, addressed by prefix and name.

    ``handled`` counts the jobs moved or deleted by the running operation so far: after an error it
    tells the caller whether anything changed before it.
    """

    def __init__(self, client, name, prefix='bull', batch_size=500, data_model='auto'):
        if not isinstance(batch_size, int) or batch_size < 1 or batch_size > 10000:
            raise BullMQError('batch_size must be between 1 and 10000, got %r' % (batch_size,))
        if data_model not in ('auto', 'v5', 'v6'):
            raise BullMQError("data_model must be one of auto, v5, v6, got %r" % (data_model,))
        self.client = client
        self.keys = QueueKeys(prefix, name)
        if is_cluster(client) and not hash_tag(self.keys.base):
            # BullMQ's scripts, and ours, touch every key of a queue in one call.
            raise BullMQError('queue %r on Redis Cluster: its keys %s<type> have no hash tag, so they sit in '
                              'different slots and no script can touch them together (BullMQ itself requires '
                              'one); use a hash-tagged prefix such as {bull}' % (name, self.keys.base))
        self.name = name
        self.prefix = prefix
        self.batch_size = batch_size
        self.data_model_option = data_model
        self.call_times = []  # seconds per write call (EVALSHA), for benchmarks
        self.handled = 0
        self._scripts = {}

    # ----------------------------------------------------------------- helpers
    def _script(self, name):
        if name not in self._scripts:
            self._scripts[name] = self.client.register_script(getattr(bullmq_lua, name))
        return self._scripts[name]

    def _call(self, name, keys, args):
        """Run one of our scripts; its refusal (sent before any write) becomes a BullMQError."""
        try:
            return self._script(name)(keys=keys, args=args)
        except ResponseError as error:
            text = str(error)
            if text.startswith(LUA_REFUSAL):
                raise BullMQError('refusing to touch queue %r: %s' % (self.name, text[len(LUA_REFUSAL):]))
            raise

    def _eval(self, name, keys, args):
        started = time.perf_counter()
        result = self._call(name, keys, args)
        self.call_times.append(time.perf_counter() - started)
        return result

    def _pipe(self):
        return self.client.pipeline(transaction=False)

    def validate(self):
        """Refuse wrong key types (naming the key) and unknown queues. Returns {kind: type}."""
        pipe = self._pipe()
        kinds = sorted(KEY_TYPES)
        for kind in kinds:
            pipe.type(self.keys[kind])
        types = dict((kind, _text(found)) for kind, found in zip(kinds, pipe.execute()))
        for kind in kinds:
            if types[kind] != 'none' and types[kind] != KEY_TYPES[kind]:
                raise BullMQError('refusing to touch queue %r: key %s has type %s, expected %s' % (
                    self.name, _text(self.keys[kind]), types[kind], KEY_TYPES[kind]))
        if all(found == 'none' for found in types.values()):
            raise QueueNotFound('queue %r not found under prefix %r: no key %s<type> exists (check prefix and name)' % (
                self.name, self.prefix, self.keys.base))
        return types

    def _meta_count(self, field, value):
        if value is None:
            return None
        if not COUNT_PATTERN.match(_text(value)):
            raise BullMQError('refusing to touch queue %r: meta field %s is %r, not an integer from 0 to %d' % (
                self.name, field, _text(value)[:40], bullmq_lua.COUNT_LIMIT))
        return int(value)

    def meta(self):
        values = self.client.hmget(self.keys['meta'], 'paused', 'version', 'opts.maxLenEvents', 'concurrency')
        max_len_events = self._meta_count('opts.maxLenEvents', values[2])
        return dict(
            paused=values[0] is not None,
            version=_text(values[1]),
            max_len_events=DEFAULT_MAX_EVENTS if max_len_events is None else max_len_events,
            concurrency=self._meta_count('concurrency', values[3]),
        )

    def data_model(self, meta=None):
        """(model, source): the BullMQ data model the queue follows and how it was decided.

        v5 = a paused queue keeps its waiting jobs in the ``paused`` list; v6 = ``paused`` is
        only a flag and jobs stay in ``wait``. When nothing tells them apart the model is
        ``unknown``: repair then treats a paused queue like v5 (jobs go to ``paused``), which is
        also right for v6 because resume moves a leftover ``paused`` list back to ``wait``.
        """
        if self.data_model_option != 'auto':
            return self.data_model_option, 'option'
        meta = meta or self.meta()
        version = parse_version(meta['version'])
        if version:
            return ('v6' if version[0] >= 6 else 'v5'), 'meta.version'
        if self.client.exists(self.keys['paused']):
            return 'v5', 'paused list present'
        if meta['paused'] and self.client.llen(self.keys['wait']) > 0:
            return 'v6', 'paused queue keeps jobs in wait'
        return 'unknown', 'no version in meta'

    def stalled_behaviour(self, meta):
        """Counter field and over-limit treatment of the queue's BullMQ version."""
        version = parse_version(meta['version'])
        field = 'stalledCounter' if version and version < (5, 49, 0) else 'stc'
        treatment = 'fail' if version and version < (5, 53, 2) else 'defer'
        return field, treatment

    def counts(self):
        pipe = self._pipe()
        for state in STATES:
            if KEY_TYPES[state] == 'list':
                pipe.llen(self.keys[state])
            else:
                pipe.zcard(self.keys[state])
        return dict(zip(STATES, [int(v) for v in pipe.execute()]))

    def _job_times(self, ids, fields=('processedOn', 'timestamp')):
        """Start (or creation) time of each job in ms; None when unknown, not a number or no job hash."""
        pipe = self._pipe()
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), *fields)
        out = []
        for values in pipe.execute(raise_on_error=False):
            if isinstance(values, Exception):
                values = []
            stamp = next((v for v in values if v is not None), None)
            try:
                out.append(int(float(stamp)) if stamp is not None else None)
            except ValueError:
                out.append(None)
        return out

    def _age(self, now, stamp):
        if stamp is None:
            return None
        return round(max(0, now - stamp) / 1000.0, 3)

    def _oldest_in_list(self, kind, now):
        ids = self.client.lrange(self.keys[kind], -1, -1)
        if not ids:
            return None
        return self._age(now, self._job_times(ids, ('timestamp',))[0])

    def _active_windows(self, field):
        """Windows of active jobs as ActiveJob tuples, from the tail (oldest) towards the head. Each
        window is read in one atomic, read-only Lua call of at most batch_size jobs."""
        offset = 0
        guard = self.client.llen(self.keys['active']) // self.batch_size + 2
        while guard > 0:
            guard -= 1
            flat = self._call('INSPECT_ACTIVE_WINDOW', [self.keys['active'], self.keys['repeat']],
                              [self.keys.job_prefix, -(offset + self.batch_size), -(offset + 1), field])
            window = [_active_job(flat[at:at + 6]) for at in range(0, len(flat), 6)]
            if not window:
                return
            yield window
            offset += len(window)
            if len(window) < self.batch_size:
                return

    def scan_active(self, now, sample=SAMPLE_SIZE, field='stc'):
        """Active jobs without a lock (stalled candidates), with one, and without a lock but corrupt (no
        job hash, or a stalled counter that is no integer: repair leaves them); bounded samples."""
        result = dict(candidates=0, candidate_sample=[], locked=0, locked_sample=[],
                      corrupt=Tally(sample), oldest_candidate_age_seconds=None, oldest_active_age_seconds=None)
        for window in self._active_windows(field):
            for job in window:
                age = self._age(now, job.started)
                if age is not None and (result['oldest_active_age_seconds'] is None
                                        or age > result['oldest_active_age_seconds']):
                    result['oldest_active_age_seconds'] = age
                entry = dict(id=_text(job.id), age_seconds=age)
                if job.locked:
                    result['locked'] += 1
                    if len(result['locked_sample']) < sample:
                        result['locked_sample'].append(entry)
                elif job.problem:
                    result['corrupt'].add(job.id, job.problem)
                else:
                    result['candidates'] += 1
                    if len(result['candidate_sample']) < sample:
                        result['candidate_sample'].append(entry)
                    if age is not None and (result['oldest_candidate_age_seconds'] is None
                                            or age > result['oldest_candidate_age_seconds']):
                        result['oldest_candidate_age_seconds'] = age
        return result

    # -------------------------------------------------------------------- info
    def info(self, scan_active=True, sample=SAMPLE_SIZE):
        self.validate()
        meta = self.meta()
        model, source = self.data_model(meta)
        field, treatment = self.stalled_behaviour(meta)
        now = server_time_ms(self.client)
        counts = self.counts()
        info = dict(
            name=self.name, prefix=self.prefix, key_prefix=self.keys.base,
            counts=counts, total=sum(counts.values()),
            paused=meta['paused'], version=meta['version'], data_model=model, data_model_source=source,
            stalled_counter_field=field, over_limit_treatment=treatment,
            max_len_events=meta['max_len_events'], concurrency=meta['concurrency'],
            events=int(self.client.xlen(self.keys['events'])) if self.client.exists(self.keys['events']) else 0,
            oldest_waiting_age_seconds=self._oldest_in_list('wait', now),
            oldest_paused_age_seconds=self._oldest_in_list('paused', now),
        )
        if scan_active:
            active = self.scan_active(now, sample, field)
            info.update(
                stalled_candidates=active['candidates'],
                stalled_candidate_sample=active['candidate_sample'],
                oldest_stalled_candidate_age_seconds=active['oldest_candidate_age_seconds'],
                locked_active=active['locked'],
                locked_active_sample=active['locked_sample'],
                corrupt_active=active['corrupt'].count,
                corrupt_active_sample=active['corrupt'].sample,
                oldest_active_age_seconds=active['oldest_active_age_seconds'],
            )
        return info

    # ------------------------------------------------------------------ repair
    def repair(self, max_stalled_count=1, limit=None, check_mode=False, sample=SAMPLE_SIZE):
        """Move active jobs without a lock back to waiting, one Lua call per batch.

        Returns moved / locked (live, left alone) / over-limit / corrupt (left in active) counts and
        bounded samples.
        """
        if max_stalled_count < 0:
            raise BullMQError('max_stalled_count must be >= 0')
        self.handled = 0
        self.validate()
        meta = self.meta()
        model, source = self.data_model(meta)
        field, treatment = self.stalled_behaviour(meta)
        target_model = 'v6' if model == 'v6' else 'v5'
        now = server_time_ms(self.client)
        before = self.counts()
        self.call_times = []
        moved, locked, over, corrupt = Tally(sample), Tally(sample), Tally(sample), Tally(sample)
        fails_inline = treatment == 'fail'

        def room():
            return None if limit is None else limit - moved.count - (over.count if fails_inline else 0)

        if check_mode:
            for window in self._active_windows(field):
                if room() is not None and room() <= 0:
                    break
                for job in window:
                    if job.locked:
                        locked.add(job.id)
                    elif job.problem:
                        corrupt.add(job.id, job.problem)
                    elif room() is None or room() > 0:
                        over_limit = job.counter + 1 > max_stalled_count and not job.scheduled
                        if over_limit:
                            over.add(job.id)
                        if not (over_limit and fails_inline):
                            moved.add(job.id)
        else:
            k = self.keys
            keys = [k['active'], k['wait'], k['paused'], k['meta'], k['marker'], k['events'], k['repeat'],
                    k['failed'], k['stalled']]
            budget = self.client.llen(k['active'])
            visited = 0
            while visited < budget:
                size = min(self.batch_size, budget - visited)
                if room() is not None:
                    if room() <= 0:
                        break
                    size = min(size, room())
                counts, res_moved, res_locked, res_over, res_corrupt = self._eval('REPAIR_STALLED', keys, [
                    k.job_prefix, max_stalled_count, field, treatment, target_model, now, size, CALL_BUDGET_MS,
                    sample])
                res_visited, n_moved, n_locked, n_over, n_corrupt = counts
                moved.extend(res_moved, n_moved)
                locked.extend(res_locked, n_locked)
                over.extend(res_over, n_over)
                corrupt.extend_pairs(res_corrupt, n_corrupt)
                self.handled = moved.count + (over.count if fails_inline else 0)
                if not res_visited:  # active is empty (workers took the rest)
                    break
                visited += res_visited
        locked_ages = self._job_times(locked.sample) if locked.sample else []
        failed_inline = over.count if fails_inline else 0
        target = 'paused' if (meta['paused'] and target_model == 'v5') else 'wait'
        if check_mode:
            after = dict(before)
            after['active'] -= moved.count + failed_inline
            after[target] += moved.count
            after['failed'] += failed_inline
        else:
            after = self.counts()
        return dict(
            changed=(moved.count + failed_inline) > 0,
            moved=moved.count, moved_sample=[_text(i) for i in moved.sample],
            over_limit=over.count, over_limit_sample=[_text(i) for i in over.sample],
            over_limit_treatment=treatment, stalled_counter_field=field,
            skipped_locked=locked.count,
            skipped_locked_sample=[dict(id=_text(i), age_seconds=self._age(now, s))
                                   for i, s in zip(locked.sample, locked_ages)],
            corrupt_count=corrupt.count, corrupt_jobs=corrupt.sample, corrupt_left_in='active',
            data_model=model, data_model_source=source, target=target,
            paused=meta['paused'], batches=len(self.call_times),
            before=before, after=after,
        )

    # ------------------------------------------------- sorted-set operations
    def _set_operation(self, kind, max_score, limit, check_mode, sample, script, extra_args, keys):
        """Run ``script`` (MOVE_SET_TO_WAIT or CLEAN_SET) over the jobs of the sorted set ``kind`` with score
        <= max_score, oldest first, in batches; or, in check mode, the same checks read-only.

        Jobs that fail their check stay in the set (the next batch starts after them). A run visits at
        most the jobs the range held when it started. Returns (handled, corrupt, prioritized) tallies;
        prioritized counts, in check mode, the handled jobs a move would send to ``prioritized``.
        """
        k = self.keys
        handled, corrupt, prioritized = Tally(sample), Tally(sample), Tally(0)
        budget = self.client.zcount(k[kind], '-inf', max_score)
        visited = 0
        mode = 'clean' if script == 'CLEAN_SET' else 'move'
        while visited < budget and (limit is None or handled.count < limit):
            count = min(self.batch_size, budget - visited)
            if check_mode:
                flat = self._call('INSPECT_SET_WINDOW', [k[kind], k['pc']],
                                  [k.job_prefix, max_score, count, visited, mode])
                for at in range(0, len(flat), 3):
                    job_id, problem, to_prioritized = flat[at], _text(flat[at + 1]), flat[at + 2]
                    if problem:
                        corrupt.add(job_id, problem)
                    elif limit is None or handled.count < limit:
                        handled.add(job_id)
                        if to_prioritized:
                            prioritized.add(job_id)
                seen = len(flat) // 3
            else:
                if limit is not None:
                    count = min(count, limit - handled.count)
                done, bad, seen = self._eval(script, keys, [k.job_prefix, max_score, count, corrupt.count]
                                             + extra_args)
                handled.extend(done)
                corrupt.extend_pairs(bad)
                self.handled = handled.count
            if not seen:
                break
            visited += seen
        return handled, corrupt, prioritized

    def _zset_batches(self, kind, max_score, limit, check_mode, sample, prev):
        self.handled = 0
        before = self.counts()
        meta = self.meta()
        model, source = self.data_model(meta)
        target_model = 'v6' if model == 'v6' else 'v5'
        k = self.keys
        keys = [k[kind], k['wait'], k['paused'], k['meta'], k['active'], k['marker'], k['events'],
                k['prioritized'], k['pc']]
        moved, corrupt, prioritized = self._set_operation(kind, max_score, limit, check_mode, sample,
                                                          'MOVE_SET_TO_WAIT', [prev, target_model], keys)
        if check_mode:
            after = dict(before)
            after[kind] -= moved.count
            after['prioritized'] += prioritized.count
            after['paused' if meta['paused'] and target_model == 'v5' else 'wait'] += moved.count - prioritized.count
        else:
            after = self.counts()
        return dict(changed=moved.count > 0, moved=moved.count, moved_sample=[_text(i) for i in moved.sample],
                    corrupt_count=corrupt.count, corrupt_jobs=corrupt.sample, corrupt_left_in=kind,
                    before=before, after=after, data_model=model, data_model_source=source, paused=meta['paused'])

    def retry(self, older_than_ms=0, limit=None, check_mode=False, sample=SAMPLE_SIZE):
        """Failed jobs (finished at least ``older_than_ms`` ago) back to waiting, oldest first."""
        self.validate()
        max_score = server_time_ms(self.client) - older_than_ms
        return self._zset_batches('failed', max_score, limit, check_mode, sample, 'failed')

    def promote(self, limit=None, check_mode=False, sample=SAMPLE_SIZE):
        """Delayed jobs to waiting now (or to prioritized for jobs with a priority)."""
        self.validate()
        return self._zset_batches('delayed', '+inf', limit, check_mode, sample, 'delayed')

    # ------------------------------------------------------------------ clean
    def clean(self, state, grace_ms, limit=None, check_mode=False, sample=SAMPLE_SIZE):
        """Delete finished jobs (with their keys) that finished more than ``grace_ms`` ago."""
        if state not in ('completed', 'failed'):
            raise BullMQError("clean works on completed or failed jobs, not %r" % (state,))
        if grace_ms < 0:
            raise BullMQError('older_than must be >= 0')
        self.handled = 0
        self.validate()
        self.meta()
        before = self.counts()
        k = self.keys
        max_score = server_time_ms(self.client) - grace_ms
        deleted, corrupt, _unused = self._set_operation(
            state, max_score, limit, check_mode, sample, 'CLEAN_SET', [k.job_prefix + b'de:'],
            [k[state], k['events'], k['meta']])
        if check_mode:
            after = dict(before)
            after[state] -= deleted.count
        else:
            after = self.counts()
        return dict(changed=deleted.count > 0, deleted=deleted.count, deleted_sample=[_text(i) for i in deleted.sample],
                    corrupt_count=corrupt.count, corrupt_jobs=corrupt.sample, corrupt_left_in=state,
                    before=before, after=after)

    # ---------------------------------------------------------- pause/resume
    def pause(self, check_mode=False):
        """Pause as the queue's version does (v5 also moves ``wait`` into ``paused``)."""
        return self._pause_resume('paused', check_mode)

    def resume(self, check_mode=False):
        """Resume; any ``paused`` list goes back to ``wait`` in bounded steps without overwriting it."""
        return self._pause_resume('resumed', check_mode)

    def _pause_resume(self, action, check_mode):
        self.handled = 0
        self.validate()
        meta = self.meta()
        model, source = self.data_model(meta)
        k = self.keys
        before = self.counts()
        if action == 'paused':
            move = model != 'v6'  # v5 and unknown: move wait into paused (safe for v6 too)
            source_key, dest_key = k['wait'], k['paused']
            needed = not meta['paused'] or (move and before['wait'] > 0)
            after = dict(before)
            if move:
                after['paused'] += after['wait']
                after['wait'] = 0
        else:
            move = True
            source_key, dest_key = k['paused'], k['wait']
            needed = meta['paused'] or before['paused'] > 0
            after = dict(before)
            after['wait'] += after['paused']
            after['paused'] = 0
        if not needed:
            return dict(changed=False, before=before, after=before, paused=meta['paused'],
                        data_model=model, data_model_source=source)
        if not check_mode:
            keys = [source_key, dest_key, k['meta'], k['prioritized'], k['events'], k['delayed'], k['marker']]
            guard = before['wait'] + before['paused'] + 10
            while guard > 0:
                guard -= 1
                left = self._eval('PAUSE_RESUME', keys, [action, '1' if move else '0', min(self.batch_size, 5000)])
                self.handled += 1
                if not left:
                    break
            after = self.counts()
        return dict(changed=True, before=before, after=after, paused=action == 'paused',
                    data_model=model, data_model_source=source)


# One job of an INSPECT_ACTIVE_WINDOW reply.
ActiveJob = collections.namedtuple('ActiveJob', 'id locked started problem counter scheduled')


def _active_job(fields):
    job_id, locked, started, problem, counter, scheduled = fields
    try:
        started = int(float(started)) if started else None
    except ValueError:
        started = None
    problem = _text(problem)
    # the script checked the counter of every job without a problem: an integer or absent
    return ActiveJob(job_id, bool(locked), started, problem, 0 if problem or not counter else int(counter),
                     bool(scheduled))


class Tally(object):
    """A count and the first ``size`` entries (ids, or {id, reason} for corrupt jobs)."""

    def __init__(self, size):
        self.size = size
        self.count = 0
        self.sample = []

    def add(self, job_id, reason=None):
        self.count += 1
        if len(self.sample) < self.size:
            self.sample.append(job_id if reason is None else dict(id=_text(job_id), reason=_text(reason)))

    def extend(self, ids, count=None):
        """``count`` entries (all of ``ids`` when None), of which ``ids`` were returned."""
        self.count += len(ids) if count is None else count
        self.sample.extend(ids[:max(0, self.size - len(self.sample))])

    def extend_pairs(self, flat, count=None):
        """Corrupt jobs as a script returns them: {id, reason, id, reason, ...}, of ``count``."""
        for at in range(0, len(flat), 2):
            self.add(flat[at], flat[at + 1])
        if count is not None:
            self.count += count - len(flat) // 2


def counts_total(counts):
    return sum(counts.values())
