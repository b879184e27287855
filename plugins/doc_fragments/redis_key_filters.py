# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Which keys M(cerniq.ops.redis_keys) deletes and M(cerniq.ops.redis_keys_info) counts
    # (KEY_FILTER_ARGUMENT_SPEC in plugins/module_utils/redis_keys.py).
    DOCUMENTATION = r'''
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
  allow_all:
    description:
      - Allow patterns without a literal part (see O(patterns)), such as C(*), which match every key of the database.
    type: bool
    default: false
  key_type:
    description: Only keys of this type (C(SCAN ... TYPE), Redis 6.0 or later).
    type: str
    choices: [string, list, set, zset, hash, stream]
  no_ttl_only:
    description: Only keys without an expiry (C(TTL) is -1).
    type: bool
    default: false
  min_idle_time:
    description:
      - Only keys not read or written for at least this long (C(OBJECT IDLETIME)), a duration with a unit
        (C(1 day), C(12h)), rounded up to whole seconds; at most 10 years. A number without a unit is refused.
      - Fails with the server's message when an LFU C(maxmemory-policy) is set (idle time not tracked).
      - Called C(idle_seconds) (a number of seconds) before 1.0.0.
    type: str
  scan_count:
    description:
      - C(COUNT) hint of each C(SCAN) page (hash slots examined per server call), 1 to 100000.
      - One server call handles one page; at 1000 a call takes about 1.5-2 ms of server CPU, so other
        clients never wait long. Larger pages are a little faster overall but block others longer.
    type: int
    default: 1000
  sample_size:
    description: Most key names returned in RV(sample).
    type: int
    default: 10
notes:
  - Counts come from C(SCAN), which may return a key twice while the server resizes its hash table;
    counts without deletion (check mode, M(cerniq.ops.redis_keys_info), the O(cerniq.ops.redis_keys#module:max_keys)
    pass) are then slightly high, never low.
  - Requires Redis 6.0 or later; on a Redis Cluster, Redis 7.0 or later (script flags).
'''
