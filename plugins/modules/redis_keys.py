#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: redis_keys
short_description: Delete or count Redis keys matching glob patterns, safely on a live server
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
extends_documentation_fragment:
  - cerniq.ops.redis
attributes:
  check_mode:
    support: full
    description: Counts the matching keys (with the filters) and returns a sample; deletes nothing.
  diff_mode:
    support: none
    description: No diff; the result holds counts and a sample of key names.
options:
  patterns:
    description:
      - Glob patterns as understood by C(SCAN MATCH) (C(*), C(?), C([a-z]), C([^a-z]), C(\\) escapes).
      - Each pattern must have a literal part, judged by what the pattern can match, not by how it is spelled.
        A pattern made only of C(*), C(?) and classes of several characters (C(*), C(?*), C(*?), C([^x]*),
        C([a-z]*), C([!x]*)...) has no character that every key it matches contains, so it can match nearly
        every key of the database; it is refused unless O(allow_all=true). A one-character class such as
        C([c]) or an escaped C(\\*) counts as literal.
      - An empty pattern is refused.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(absent) deletes the matching keys.
      - V(count) only counts them (never changes anything, like check mode).
    type: str
    choices: [absent, count]
    default: absent
  allow_all:
    description:
      - Allow patterns without a literal part (see O(patterns)), such as C(*), which match every key of the database.
    type: bool
    default: false
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
        second time; a matching key created after the count is left for the next run.
    type: int
  key_type:
    description: Only delete keys of this type (C(SCAN ... TYPE), Redis 6.0 or later).
    type: str
    choices: [string, list, set, zset, hash, stream]
  no_ttl_only:
    description: Only delete keys without an expiry (C(TTL) is -1).
    type: bool
    default: false
  idle_seconds:
    description:
      - Only delete keys not read or written for at least this many seconds (C(OBJECT IDLETIME)).
      - Fails with the server's message when an LFU C(maxmemory-policy) is set (idle time not tracked).
    type: int
  scan_count:
    description:
      - C(COUNT) hint of each C(SCAN) page (hash slots examined per server call), 1 to 100000.
      - One server call handles one page; at 1000 a call takes about 1.5-2 ms of server CPU, so other
        clients never wait long. Larger pages are a little faster overall but block others longer.
      - With O(max_keys), the kept names are deleted about this many per call.
    type: int
    default: 1000
  batch_size:
    description:
      - Most keys per C(UNLINK) inside a page, 1 to 5000. On a Redis Cluster keys are unlinked one by one
        (one page spans many hash slots).
    type: int
    default: 1000
  sample_size:
    description: Most key names returned in RV(sample).
    type: int
    default: 10
notes:
  - Counts come from C(SCAN), which may return a key twice while the server resizes its hash table;
    counts without deletion (check mode, V(count), the O(max_keys) pass) are then slightly high,
    never low. RV(deleted) is exact.
  - Requires Redis 6.0 or later; on a Redis Cluster, Redis 7.0 or later (script flags).
seealso:
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
    idle_seconds: 86400

- name: How many keys would go (changes nothing)
  cerniq.ops.redis_keys:
    patterns: ["cache:*"]
    state: count
  register: cache_keys

- name: On a Redis Cluster
  cerniq.ops.redis_keys:
    redis_host: redis-node-1
    redis_cluster: true
    patterns: ["session:expired:*"]
'''

RETURN = r'''
matched:
  description:
    - Keys matching the patterns and filters (deleted or, in check mode / V(count), to delete).
    - When O(max_keys) refuses the run, the count at which counting stopped (more than O(max_keys)).
  returned: always
  type: int
  sample: 1000000
deleted:
  description: Keys actually unlinked (0 in check mode and with V(count)).
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
elapsed:
  description: Seconds the run took.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import (
    redis_argument_spec, redis_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.redis_keys import (
    DEFAULT_BATCH_SIZE, DEFAULT_SAMPLE_SIZE, DEFAULT_SCAN_COUNT, KEY_TYPES, KeyCleaner, RedisKeysError)


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(
        patterns=dict(type='list', elements='str', required=True),
        state=dict(type='str', choices=['absent', 'count'], default='absent'),
        allow_all=dict(type='bool', default=False),
        max_keys=dict(type='int', no_log=False),
        key_type=dict(type='str', choices=list(KEY_TYPES)),
        no_ttl_only=dict(type='bool', default=False),
        idle_seconds=dict(type='int'),
        scan_count=dict(type='int', default=DEFAULT_SCAN_COUNT),
        batch_size=dict(type='int', default=DEFAULT_BATCH_SIZE),
        sample_size=dict(type='int', default=DEFAULT_SAMPLE_SIZE),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    options = dict(
        key_type=params['key_type'], no_ttl_only=params['no_ttl_only'], idle_seconds=params['idle_seconds'],
        max_keys=params['max_keys'], scan_count=params['scan_count'], batch_size=params['batch_size'],
        sample_size=params['sample_size'], allow_all=params['allow_all'])
    try:
        # Validate before connecting: bad input fails the same way whether Redis is up or not.
        cleaner = KeyCleaner(None, params['patterns'], **options)
    except RedisKeysError as error:
        module.fail_json(msg=str(error))
    cleaner.client = redis_connect_module(module)
    dry_run = module.check_mode or params['state'] == 'count'
    try:
        result = cleaner.run(dry_run=dry_run)
    except RedisKeysError as error:
        extra = dict(error.result)
        module.fail_json(msg=str(error), changed=bool(extra.get('deleted')), **extra)
    if params['state'] == 'count':
        changed = False
    elif module.check_mode:
        changed = result['matched'] > 0
    else:
        changed = result['deleted'] > 0
    result.pop('dry_run', None)
    module.exit_json(changed=changed, **result)


if __name__ == '__main__':
    main()
