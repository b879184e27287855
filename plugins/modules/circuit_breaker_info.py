#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: circuit_breaker_info
short_description: Read the circuit breakers and rate-limit counters of external sources in Redis
version_added: 1.0.0
description:
  - Reads, for each source, the circuit-breaker state, its failure count and the remaining rate-limit
    budget (with the time to its reset), from keys named by templates. Changes nothing.
  - Replaces C(state=read) of M(cerniq.ops.circuit_breaker) before 1.0.0.
extends_documentation_fragment:
  - cerniq.ops.redis
  - cerniq.ops.circuit_keys
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only; nothing to diff.
seealso:
  - module: cerniq.ops.circuit_breaker
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Read the breakers of the enrichment sources
  cerniq.ops.circuit_breaker_info:
    sources: [anaf, termene]
  register: breakers

- name: The sources whose breaker is OPEN
  ansible.builtin.debug:
    msg: "{{ breakers.sources | dict2items | selectattr('value.open') | map(attribute='key') | list }}"
'''

RETURN = r'''
sources:
  description: Per source, what was read.
  returned: always
  type: dict
  contains:
    state:
      description: Value of the state key, or null when absent.
      type: str
    open:
      description: Whether the state is one of O(open_values).
      type: bool
    failures:
      description: Failure count, or null.
      type: int
    rate_limit_remaining:
      description: Remaining budget, or null.
      type: int
    rate_limit_reset_seconds:
      description: Seconds until the rate-limit key expires, or null.
      type: float
  sample:
    anaf: {state: OPEN, open: true, failures: 12, rate_limit_remaining: 0, rate_limit_reset_seconds: 41.2}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import (
    _one_line as one_line, redis_argument_spec, redis_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.circuit import (
    CIRCUIT_ARGUMENT_SPEC, CircuitBreakers, CircuitError, check_options)

try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - redis_connect_module reports the missing library
    RedisError = Exception


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(CIRCUIT_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        templates = check_options(params)
    except CircuitError as error:
        fail_engine_error(module, error)
    client = redis_connect_module(module)
    try:
        breakers = CircuitBreakers(client, templates=templates, open_values=params['open_values'])
        sources = dict((source, breakers.read(source)) for source in params['sources'])
    except CircuitError as error:
        fail_engine_error(module, error)
    except RedisError as error:
        module.fail_json(msg='Redis error: %s' % one_line(error))
    module.exit_json(changed=False, sources=sources)


if __name__ == '__main__':
    main()
