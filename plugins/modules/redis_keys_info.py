#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: redis_keys_info
short_description: Count the Redis keys matching glob patterns, and show some of them
version_added: 1.0.0
description:
  - Counts the keys M(cerniq.ops.redis_keys) would delete with the same patterns and filters - one C(SCAN)
    page per short server-side Lua call - and returns a sample of their names. Changes nothing.
  - Key names may hold any bytes (spaces, quotes, newlines, non-UTF-8, literal C(*)).
  - On a Redis Cluster every primary node is scanned (Redis 7.0 or later).
  - Replaces C(state=count) of M(cerniq.ops.redis_keys) before 1.0.0.
extends_documentation_fragment:
  - cerniq.ops.redis
  - cerniq.ops.redis_key_filters
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only; nothing to diff.
seealso:
  - module: cerniq.ops.redis_keys
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: How many cache keys would the daily cleanup delete
  cerniq.ops.redis_keys_info:
    patterns: ["cache:*", "session:expired:*"]
  register: cache_keys

- name: Cache hashes without TTL, unused for a day
  cerniq.ops.redis_keys_info:
    patterns: ["cache:*"]
    key_type: hash
    no_ttl_only: true
    min_idle_time: 1 day
    sample_size: 50
'''

RETURN = r'''
matched:
  description: Keys matching the patterns and filters.
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
  description: Per pattern, keys matched. A key matching several patterns counts for the first.
  returned: always
  type: dict
  sample: {"cache:*": {"matched": 10}}
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
elapsed_seconds:
  description: Seconds the count took.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import (
    redis_argument_spec, redis_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.redis_keys import (
    KEY_FILTER_ARGUMENT_SPEC, KeyCleaner, RedisKeysError, count_result, key_filters)


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(KEY_FILTER_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        # Validate before connecting: bad input fails the same way whether Redis is up or not.
        counter = KeyCleaner(None, module.params['patterns'], **key_filters(module.params))
    except RedisKeysError as error:
        fail_engine_error(module, error)
    counter.client = redis_connect_module(module)
    try:
        result = count_result(counter.run(dry_run=True))
    except RedisKeysError as error:
        fail_engine_error(module, error, **count_result(error.result))
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
