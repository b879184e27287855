#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: bullmq_queue
short_description: Repair a BullMQ queue safely (stalled jobs, retry, clean, pause, resume, promote)
version_added: 0.1.0
description:
  - Acts on one BullMQ queue in Redis, in batches of O(batch_size), one Lua call per batch, so no
    call blocks Redis for long whatever the size of the queue.
  - V(repaired) moves active jobs whose lock key is gone (their worker died) back to waiting the way
    BullMQ's own stalled-job check does; jobs with a live lock are left alone and reported. The lock
    is re-checked inside Lua, atomically with the move. The stalled counter is incremented; a job
    stalled more than O(max_stalled_count) times gets the queue version's treatment (deferred
    failure C(defa) on current versions, moved to failed on versions before 5.53.2). A paused BullMQ 5
    queue receives the jobs in its C(paused) list. The marker that wakes idle workers and the
    C(waiting) and C(stalled) events are written as BullMQ writes them.
  - V(retried) moves failed jobs back to waiting; V(cleaned) deletes completed or failed jobs older
    than O(older_than) with their keys; V(promoted) moves delayed jobs to waiting now.
  - V(paused) and V(resumed) pause and resume as the queue's version does; resume never overwrites
    jobs already in C(wait) (BullMQ 5's RENAME would).
  - Replaces the runbook's hand-written C(EVAL) that requeued every active job (which runs live jobs
    twice and loses jobs on paused queues).
  - Every job is checked before it leaves its list or set, inside the same Lua call that moves it. A job
    whose key is not a hash (or is missing), or whose integer field the move uses (the stalled counter
    for V(repaired), C(priority) for V(retried) and V(promoted)) is not an integer in range, is corrupt.
    It stays where it was (C(active), C(failed), C(delayed), C(completed)), is listed in RV(corrupt_jobs)
    with the reason and raises a warning, and the valid jobs of the batch still move. Check mode runs
    the same checks and reports the same. A queue key of the wrong Redis type, or a C(meta) count field
    (C(opts.maxLenEvents), C(concurrency)) that is not an integer, is refused before anything is written.
extends_documentation_fragment:
  - cerniq.ops.redis
attributes:
  check_mode:
    support: full
    description: Reads only and reports what would move, with the predicted counts.
  diff_mode:
    support: full
    description: Before and after counts per state.
options:
  name:
    description: Queue name, for example C(bronze:ingest:csv). May contain C(:).
    type: str
    required: true
  prefix:
    description: BullMQ key prefix; on Redis Cluster use a hash tag such as C({bull}).
    type: str
    default: bull
  state:
    description: What to do.
    type: str
    choices: [repaired, retried, cleaned, paused, resumed, promoted]
    default: repaired
  batch_size:
    description:
      - Jobs per Lua call, from 1 to 10000. Smaller batches mean shorter calls.
      - With O(state=repaired) a call also stops taking jobs once it has run 20 ms, whatever this value.
    type: int
    default: 500
  max_stalled_count:
    description: With O(state=repaired), a job stalled more times than this is failed the way the queue's
      BullMQ version fails it. Set it to the workers' C(maxStalledCount). From 0 to 1000000.
    type: int
    default: 1
  older_than:
    description:
      - A duration with a unit (C(10m), C(1 day)). With O(state=retried), retry only jobs that failed at least this
        long ago. With O(state=cleaned), delete only jobs finished at least this long ago (the grace period).
      - Unset - jobs of any age. At most 100 years; a number without a unit is refused (it was a number of
        seconds before 1.0.0).
    type: str
  limit:
    description: At most this many jobs are moved or deleted (all when unset); at least 1 when set.
    type: int
  clean_state:
    description: With O(state=cleaned), which finished jobs to delete.
    type: str
    choices: [completed, failed]
    default: completed
  sample_size:
    description: At most this many ids are returned in each sample (and in RV(corrupt_jobs)), from 0 to 10000.
    type: int
    default: 20
  data_model:
    description: BullMQ data model; V(auto) reads the C(meta) hash and the keys.
    type: str
    choices: [auto, v5, v6]
    default: auto
notes:
  - On failure (a refusal, Redis going away) C(changed) tells whether jobs had already been handled in earlier
    batches, and the message says how many; every job is then still in exactly one list or set.
  - Run V(repaired) with the workers still running if you like; only jobs without a lock move.
    A job whose worker is alive but whose lock expired (lockDuration too short) is, for BullMQ too,
    a stalled job.
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Move orphaned active jobs of the CSV ingest queue back to waiting
  cerniq.ops.bullmq_queue:
    name: bronze:ingest:csv
    state: repaired
    max_stalled_count: 1
  register: repair

- name: Retry at most 500 jobs that failed more than ten minutes ago
  cerniq.ops.bullmq_queue:
    name: silver:enrich:anaf-fiscal-status
    state: retried
    older_than: 10m
    limit: 500

- name: Delete completed jobs older than a day
  cerniq.ops.bullmq_queue:
    name: bronze:ingest:csv
    state: cleaned
    clean_state: completed
    older_than: 1 day

- name: Pause, then resume a queue
  cerniq.ops.bullmq_queue:
    name: bronze:ingest:csv
    state: "{{ item }}"
  loop: [paused, resumed]
'''

RETURN = r'''
before:
  description: Jobs per state before.
  returned: always
  type: dict
  sample: {wait: 45, paused: 0, active: 5, prioritized: 0, delayed: 0, completed: 0, failed: 0, waiting-children: 0}
after:
  description: Jobs per state after (predicted in check mode).
  returned: always
  type: dict
moved:
  description: Jobs moved (repaired, retried, promoted).
  returned: when state is repaired, retried or promoted
  type: int
moved_sample:
  description: Up to O(sample_size) moved ids.
  returned: when state is repaired, retried or promoted
  type: list
  elements: str
skipped_locked:
  description: Active jobs left alone because their lock is live.
  returned: when state is repaired
  type: int
skipped_locked_sample:
  description: Up to O(sample_size) of them, with C(id) and C(age_seconds).
  returned: when state is repaired
  type: list
  elements: dict
over_limit:
  description: Jobs stalled more than O(max_stalled_count) times (failed or marked for failure).
  returned: when state is repaired
  type: int
over_limit_sample:
  description: Up to O(sample_size) of them.
  returned: when state is repaired
  type: list
  elements: str
target:
  description: The list stalled jobs went to (C(wait), or C(paused) on a paused BullMQ 5 queue).
  returned: when state is repaired
  type: str
corrupt_count:
  description: Jobs that failed their check and were left where they were (0 for V(paused) and V(resumed),
    which move ids between lists as they are).
  returned: when state is repaired, retried, promoted or cleaned
  type: int
corrupt_jobs:
  description:
    - Up to O(sample_size) of them, each with C(id) and C(reason) (for example C(job key is a string, not a hash),
      C(job hash missing), C(field stc is 'abc', not an integer HINCRBY can increment)).
    - With O(state=cleaned), a job whose hash is already gone is not corrupt (it only leaves the set).
  returned: when state is repaired, retried, promoted or cleaned
  type: list
  elements: dict
  sample: [{id: '2', reason: 'job key is a string, not a hash'}]
corrupt_left_in:
  description: The list or set the corrupt jobs stay in (C(active), C(failed), C(delayed) or C(completed)).
  returned: when state is repaired, retried, promoted or cleaned
  type: str
deleted:
  description: Jobs deleted.
  returned: when state is cleaned
  type: int
deleted_sample:
  description: Up to O(sample_size) deleted ids.
  returned: when state is cleaned
  type: list
  elements: str
data_model:
  description: Data model used (C(v5), C(v6) or C(unknown)).
  returned: always
  type: str
data_model_source:
  description: How RV(data_model) was decided - C(option) (O(data_model)), C(meta.version), or what the queue's keys
    show when the meta hash has no version.
  returned: always
  type: str
name:
  description: The queue (O(name)).
  returned: always
  type: str
prefix:
  description: The key prefix (O(prefix)).
  returned: always
  type: str
state:
  description: The O(state) the run asked for.
  returned: always
  type: str
paused:
  description: Whether the queue is paused (C(meta.paused) set; after the run for V(paused) and V(resumed)).
  returned: when state is repaired, retried, promoted, paused or resumed
  type: bool
stalled_counter_field:
  description: The job hash field counting stalls for the queue's BullMQ version (C(stc), or C(stalledCounter)
    before 5.49.0).
  returned: when state is repaired
  type: str
over_limit_treatment:
  description: What the queue's BullMQ version does with a job stalled more than O(max_stalled_count) times -
    C(fail) (moved to C(failed) by the repair, before 5.53.2) or C(defer) (left to the worker's next stalled check).
  returned: when state is repaired
  type: str
batches:
  description: Server-side steps (Lua calls) the repair took.
  returned: when state is repaired
  type: int
diff:
  description: Before and after counts, when diff mode is on.
  returned: when diff mode is on
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option
from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import (
    _one_line as one_line, redis_argument_spec, redis_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.bullmq import BullMQError, Queue

try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - redis_connect_module reports the missing library
    RedisError = Exception


# Bounds of the integer options, checked before connecting.
BOUNDS = dict(batch_size=(1, 10000), max_stalled_count=(0, 1000000), sample_size=(0, 10000))
MAX_OLDER_THAN = 100 * 365 * 86400   # seconds


def _counts_text(counts):
    return ''.join('%s: %d\n' % (state, counts[state]) for state in sorted(counts))


def _failure(name, error, queue):
    """One line naming the cause, and whether earlier batches changed anything."""
    msg = str(error) if isinstance(error, BullMQError) else 'Redis error on queue %s: %s' % (name, one_line(error))
    handled = queue.handled if queue is not None else 0
    if handled:
        msg += ' (after %d jobs had been handled in earlier batches; each job is in one list or set)' % handled
    return dict(msg=msg, changed=handled > 0)


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(
        name=dict(type='str', required=True),
        prefix=dict(type='str', default='bull'),
        state=dict(type='str', default='repaired',
                   choices=['repaired', 'retried', 'cleaned', 'paused', 'resumed', 'promoted']),
        batch_size=dict(type='int', default=500),
        max_stalled_count=dict(type='int', default=1),
        older_than=dict(type='str'),
        limit=dict(type='int'),
        clean_state=dict(type='str', choices=['completed', 'failed'], default='completed'),
        sample_size=dict(type='int', default=20),
        data_model=dict(type='str', choices=['auto', 'v5', 'v6'], default='auto'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    for option, (low, high) in sorted(BOUNDS.items()):
        if not low <= params[option] <= high:
            module.fail_json(msg='%s must be between %d and %d, got %d' % (option, low, high, params[option]))
    if params['limit'] is not None and params['limit'] < 1:
        module.fail_json(msg='limit must be >= 1 when set, got %d' % params['limit'])
    if not params['name'] or not params['prefix']:
        module.fail_json(msg='name and prefix must not be empty')
    try:
        older_than_ms = int(round(1000 * (duration_option(params['older_than'], 'older_than', 0, MAX_OLDER_THAN,
                                                          optional=True) or 0)))
    except DurationError as error:
        module.fail_json(msg=str(error))

    client = redis_connect_module(module)
    check = module.check_mode
    state = params['state']
    queue = None
    try:
        queue = Queue(client, params['name'], prefix=params['prefix'], batch_size=params['batch_size'],
                      data_model=params['data_model'])
        if state == 'repaired':
            result = queue.repair(max_stalled_count=params['max_stalled_count'], limit=params['limit'],
                                  check_mode=check, sample=params['sample_size'])
        elif state == 'retried':
            result = queue.retry(older_than_ms=older_than_ms, limit=params['limit'],
                                 check_mode=check, sample=params['sample_size'])
        elif state == 'promoted':
            result = queue.promote(limit=params['limit'], check_mode=check, sample=params['sample_size'])
        elif state == 'cleaned':
            result = queue.clean(params['clean_state'], older_than_ms, limit=params['limit'],
                                 check_mode=check, sample=params['sample_size'])
        elif state == 'paused':
            result = queue.pause(check_mode=check)
        else:
            result = queue.resume(check_mode=check)
    except (BullMQError, RedisError) as error:
        fail_engine_error(module, error, **_failure(params['name'], error, queue))
    result.setdefault('data_model', None)
    if result.get('corrupt_count'):
        module.warn('%d jobs of queue %s failed their check and were left in %s: see corrupt_jobs' % (
            result['corrupt_count'], params['name'], result['corrupt_left_in']))
    if module._diff:
        result['diff'] = dict(before=_counts_text(result['before']), after=_counts_text(result['after']),
                              before_header='%s:%s (counts)' % (params['prefix'], params['name']),
                              after_header='%s:%s (counts)' % (params['prefix'], params['name']))
    module.exit_json(name=params['name'], prefix=params['prefix'], state=state, **result)


if __name__ == '__main__':
    main()
