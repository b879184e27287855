#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: redis_keys
short_description: Delete Redis keys matching glob patterns, safely on a live server
version_added: 0.1.0
description:
  - Deletes the keys matching one or more glob patterns with C(SCAN) and C(UNLINK), one page per
    short server-side Lua call, so other clients are never blocked for more than a page and no key
    name travels through the client (replaces
    C(redis-cli --scan --pattern ... | xargs redis-cli DEL), which is slow and breaks on key names
    with spaces or quotes).
  - Key names may hold any bytes (spaces, quotes, newlines, non-UTF-8, literal C(*)).
  - Optional filters keep keys of another type, keys with a TTL, or keys used recently. Filters are
    checked and the key unlinked in one atomic server-side step, so a key touched in between is kept.
  - On a Redis Cluster every primary node is scanned (Redis 7.0 or later).
  - Check mode counts the keys that would be deleted and returns a sample; it deletes nothing.
    M(cerniq.ops.redis_keys_info) counts them too (it was C(state=count) before 1.0.0).
extends_documentation_fragment:
  - cerniq.ops.redis
  - cerniq.ops.redis_key_filters
attributes:
  check_mode:
    support: full
    description: Counts the matching keys (with the filters) and returns a sample; deletes nothing.
  diff_mode:
    support: none
    description: No diff; the result holds counts and a sample of key names.
options:
  state:
    description: V(absent) - the matching keys are deleted.
    type: str
    choices: [absent]
    default: absent
  max_keys:
    description:
      - Guard. When more keys than this match, the task fails B(before deleting anything).
      - When the databases hold no more than O(max_keys) keys in all (C(DBSIZE)), nothing needs counting and
        one delete pass runs; it never deletes more than O(max_keys) keys, even if keys are added meanwhile
        (RV(limit_reached)).
      - Otherwise one counting pass (a C(SCAN) with the filters, deleting nothing) stops as soon as more keys
        match, and keeps the names of the matching keys aside (as the server encoded them; in memory up to
        8 MB, then in an unnamed temporary file removed when the run ends, about 27 bytes a key). The delete
        pass then unlinks those names, with the filters checked again, instead of scanning the keyspace a
        second time; a matching key created after the count is left for the next run. The kept names are
        deleted about O(scan_count) per call.
    type: int
  batch_size:
    description:
      - Most keys per C(UNLINK) inside a page, 1 to 5000. On a Redis Cluster keys are unlinked one by one
        (one page spans many hash slots).
    type: int
    default: 1000
notes:
  - RV(deleted) is exact.
seealso:
  - module: cerniq.ops.redis_keys_info
  - name: Redis SCAN
    description: Guarantees and cost of incremental iteration.
    link: https://redis.io/docs/latest/commands/scan/
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Runbook 3.1 step 4 - clean cache and expired session keys
  cerniq.ops.redis_keys:
    patterns:
      - "cache:*"
      - "session:expired:*"
    max_keys: 5000000

- name: Delete cache hashes without TTL, unused for a day
  cerniq.ops.redis_keys:
    patterns: ["cache:*"]
    key_type: hash
    no_ttl_only: true
    min_idle_time: 1 day

- name: On a Redis Cluster
  cerniq.ops.redis_keys:
    redis_host: redis-node-1
    redis_cluster: true
    patterns: ["session:expired:*"]
'''

RETURN = r'''
matched:
  description:
    - Keys matching the patterns and filters (deleted or, in check mode, to delete).
    - When O(max_keys) refuses the run, the count at which counting stopped (more than O(max_keys)).
  returned: always
  type: int
  sample: 1000000
deleted:
  description: Keys actually unlinked (0 in check mode).
  returned: always
  type: int
  sample: 1000000
sample:
  description: Some matching key names, decoded as UTF-8 with backslash escapes for other bytes.
  returned: always
  type: list
  elements: str
  sample: ["cache:user:42", "cache:\\xff"]
patterns:
  description: Per pattern, keys matched and deleted. A key matching several patterns counts for the first.
  returned: always
  type: dict
  sample: {"cache:*": {"matched": 10, "deleted": 10}}
scanned:
  description: Keys returned by C(SCAN) (before filters).
  returned: always
  type: int
scan_calls:
  description: C(SCAN) calls made.
  returned: always
  type: int
nodes:
  description: Master nodes scanned (1 unless Redis Cluster).
  returned: always
  type: int
limit_reached:
  description:
    - True when O(max_keys) stopped the deletion because keys were added during a run that needed no
      counting pass (RV(guard) is V(dbsize)).
  returned: always
  type: bool
counted_first:
  description: True when a counting pass ran before deleting (RV(guard) is V(counted)).
  returned: always
  type: bool
guard:
  description:
    - How the O(max_keys) guard was met. V(none) - no O(max_keys). V(dbsize) - the databases held no more
      than O(max_keys) keys, no count needed. V(counted) - a counting pass ran and its kept names were deleted.
  returned: always
  type: str
  sample: counted
elapsed_seconds:
  description: Seconds the run took (C(elapsed) before 1.0.0).
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import (
    redis_argument_spec, redis_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.redis_keys import (
    DEFAULT_BATCH_SIZE, KEY_FILTER_ARGUMENT_SPEC, KeyCleaner, RedisKeysError, key_filters)


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(KEY_FILTER_ARGUMENT_SPEC)
    argument_spec.update(
        state=dict(type='str', choices=['absent'], default='absent'),
        max_keys=dict(type='int', no_log=False),
        batch_size=dict(type='int', default=DEFAULT_BATCH_SIZE),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        # Validate before connecting: bad input fails the same way whether Redis is up or not.
        cleaner = KeyCleaner(None, params['patterns'], max_keys=params['max_keys'], batch_size=params['batch_size'],
                             **key_filters(params))
    except RedisKeysError as error:
        fail_engine_error(module, error)
    cleaner.client = redis_connect_module(module)
    try:
        result = cleaner.run(dry_run=module.check_mode)
    except RedisKeysError as error:
        fail_engine_error(module, error, changed=bool(error.result.get('deleted')))
    changed = result['matched'] > 0 if module.check_mode else result['deleted'] > 0
    module.exit_json(changed=changed, **result)


if __name__ == '__main__':
    main()
