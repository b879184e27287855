#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: bullmq_queue_info
short_description: Inspect BullMQ queues in Redis (counts, stalled candidates, ages, version)
version_added: 0.1.0
description:
  - Reads the state of named BullMQ queues, or of every queue found under a prefix.
  - Reports counts per state, the paused flag, the data-model version, stalled candidates
    (active jobs whose lock key is gone) with their age, and the age of the oldest waiting
    and oldest active job.
  - Named queues are read with direct commands; SCAN is used only when O(names) is empty, to
    discover queues under O(prefix). Active lists are read in windows of O(batch_size) ids, so
    memory stays bounded for queues of any size.
  - A queue with no keys, or with a key of the wrong Redis type, fails with a message naming it.
extends_documentation_fragment:
  - cerniq.ops.redis
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs unchanged in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
options:
  prefix:
    description: BullMQ key prefix (C(bull) by default; use a hash tag such as C({bull}) on Redis Cluster).
    type: str
    default: bull
  names:
    description:
      - Queue names, for example C(bronze:ingest:csv). Names may contain C(:).
      - When empty, queues are discovered under O(prefix) with SCAN.
    type: list
    elements: str
    default: []
  batch_size:
    description:
      - Ids read per LRANGE window and per pipeline.
      - Each window of the active list is read in one atomic, read-only Lua call (ids, locks and start
        times together), so at most this many jobs are examined per server call. From 1 to 10000.
    type: int
    default: 1000
  scan_active:
    description: Check the lock of every active job to count stalled candidates. Off gives counts only.
    type: bool
    default: true
  sample_size:
    description: At most this many ids are listed in each sample, from 0 to 10000.
    type: int
    default: 20
  ignore_missing:
    description:
      - Report a named queue that has no key with C(exists=false) instead of failing.
    type: bool
    default: false
  data_model:
    description:
      - BullMQ data model of the queues. V(auto) reads C(version) from the queue's C(meta) hash and
        otherwise looks at the keys (a C(paused) list means the BullMQ 5 model).
    type: str
    choices: [auto, v5, v6]
    default: auto
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Inspect the CSV ingest queue
  cerniq.ops.bullmq_queue_info:
    names: ['bronze:ingest:csv']
    redis_host: redis.internal
  register: queues

- name: Inspect every queue under the default prefix
  cerniq.ops.bullmq_queue_info:
  register: all_queues

- name: Fail when a queue has stalled jobs
  ansible.builtin.assert:
    that: queues.queues['bronze:ingest:csv'].stalled_candidates == 0
'''

RETURN = r'''
queues:
  description: Per queue name, its state.
  returned: always
  type: dict
  contains:
    exists:
      description: False for a missing queue reported because of O(ignore_missing) (no other field then).
      type: bool
    counts:
      description: Jobs per state (wait, paused, active, prioritized, delayed, completed, failed, waiting-children).
      type: dict
    total:
      description: Sum of the counts.
      type: int
    paused:
      description: Whether C(meta.paused) is set.
      type: bool
    version:
      description: C(version) field of the C(meta) hash (for example C(bullmq:5.58.0)), or null.
      type: str
    data_model:
      description: C(v5) (paused queue keeps jobs in the C(paused) list), C(v6), or C(unknown).
      type: str
    stalled_candidates:
      description:
        - Active jobs without a lock key. Each window of the active list and its locks are read in one atomic
          step, so a job that finishes during the scan is never counted.
      type: int
    stalled_candidate_sample:
      description: Up to O(sample_size) of them, with C(id) and C(age_seconds) (since processedOn).
      type: list
      elements: dict
    locked_active:
      description: Active jobs with a live lock.
      type: int
    corrupt_active:
      description:
        - Active jobs without a lock that O(cerniq.ops.bullmq_queue#module:state=repaired) would leave in C(active),
          because the job hash is missing, the job key has another type, or the stalled counter is not an integer
          HINCRBY can increment.
        - They are not counted in RV(queues.stalled_candidates).
      type: int
    corrupt_active_sample:
      description: Up to O(sample_size) of them, with C(id) and C(reason).
      type: list
      elements: dict
    oldest_waiting_age_seconds:
      description: Age of the oldest job in C(wait), or null.
      type: float
    oldest_active_age_seconds:
      description: Age (since processedOn) of the oldest active job, or null.
      type: float
  sample:
    bronze:ingest:csv:
      counts: {wait: 45, paused: 0, active: 5, prioritized: 0, delayed: 0, completed: 10, failed: 0,
               waiting-children: 0}
      total: 60
      paused: false
      version: null
      data_model: unknown
      stalled_candidates: 5
      locked_active: 0
names:
  description: The queue names inspected (discovered ones when O(names) was empty).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import (
    _one_line as one_line, redis_argument_spec, redis_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.bullmq import (
    BullMQError, Queue, QueueNotFound, discover_queues)

try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - redis_connect_module reports the missing library
    RedisError = Exception


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(
        prefix=dict(type='str', default='bull'),
        names=dict(type='list', elements='str', default=[]),
        batch_size=dict(type='int', default=1000),
        scan_active=dict(type='bool', default=True),
        sample_size=dict(type='int', default=20),
        data_model=dict(type='str', choices=['auto', 'v5', 'v6'], default='auto'),
        ignore_missing=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if not 1 <= params['batch_size'] <= 10000:
        module.fail_json(msg='batch_size must be between 1 and 10000, got %d' % params['batch_size'])
    if not 0 <= params['sample_size'] <= 10000:
        module.fail_json(msg='sample_size must be between 0 and 10000, got %d' % params['sample_size'])
    if not params['prefix']:
        module.fail_json(msg='prefix must not be empty')
    if not all(params['names']):
        module.fail_json(msg='names must not contain an empty name')
    client = redis_connect_module(module)
    try:
        names = params['names'] or discover_queues(client, params['prefix'])
        queues = {}
        for name in names:
            queue = Queue(client, name, prefix=params['prefix'], batch_size=params['batch_size'],
                          data_model=params['data_model'])
            try:
                queues[name] = queue.info(scan_active=params['scan_active'], sample=params['sample_size'])
                queues[name]['exists'] = True
            except QueueNotFound as error:
                if not params['ignore_missing']:
                    raise
                queues[name] = dict(name=name, prefix=params['prefix'], exists=False, msg=str(error))
    except BullMQError as error:
        fail_engine_error(module, error)
    except RedisError as error:
        module.fail_json(msg='Redis error: %s' % one_line(error))
    module.exit_json(changed=False, names=names, queues=queues)


if __name__ == '__main__':
    main()
