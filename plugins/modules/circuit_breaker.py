#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: circuit_breaker
short_description: Read and reset the circuit breakers and rate-limit counters of external sources in Redis
version_added: 0.1.0
description:
  - Reads, for each source, the circuit-breaker state, its failure count and the remaining rate-limit
    budget (with the time to its reset), from keys named by templates.
  - With O(state=reset), resets a breaker that is OPEN by deleting its state and failure keys (what the
    runbook does by hand with C(redis-cli DEL)); a breaker that is not OPEN is left alone unless O(force).
    The OPEN check and the delete of the state key are one atomic Lua call.
  - Keys of another Redis type than string are refused, naming the key.
extends_documentation_fragment:
  - cerniq.ops.redis
attributes:
  check_mode:
    support: full
    description: Reports which breakers would be reset; writes nothing.
  diff_mode:
    support: full
    description: State and failure count of each source before and after.
options:
  sources:
    description: Source names, for example C(anaf) and C(termene).
    type: list
    elements: str
    required: true
  state:
    description: V(read) only reads; V(reset) resets OPEN breakers.
    type: str
    choices: [read, reset]
    default: read
  force:
    description: With O(state=reset), reset the breaker whatever its state.
    type: bool
    default: false
  open_values:
    description: State values meaning OPEN (compared without case).
    type: list
    elements: str
    default: [OPEN]
  state_key:
    description:
      - Template of the state key; C({source}) is replaced by the source name.
      - The three templates must each contain C({source}), must not be empty and must name different keys;
        anything else is refused before connecting.
    type: str
    default: 'circuit:{source}:state'
  failures_key:
    description: Template of the failure-count key.
    type: str
    default: 'circuit:{source}:failures'
  rate_limit_key:
    description: Template of the remaining rate-limit budget key.
    type: str
    default: 'rate_limit:{source}:remaining'
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Read the breakers of the enrichment sources
  cerniq.ops.circuit_breaker:
    sources: [anaf, termene]
  register: breakers

- name: Reset the ANAF breaker if it is stuck OPEN
  cerniq.ops.circuit_breaker:
    sources: [anaf]
    state: reset
'''

RETURN = r'''
sources:
  description: Per source, what was read (after the reset for O(state=reset)).
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
reset:
  description: Sources that were (or in check mode would be) reset.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import (
    _one_line as one_line, redis_argument_spec, redis_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.circuit import (
    CircuitBreakers, CircuitError, checked_templates, key_for)

try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - redis_connect_module reports the missing library
    RedisError = Exception


def _line(entry):
    return 'state=%s failures=%s rate_limit_remaining=%s\n' % (
        entry['state'], entry['failures'], entry['rate_limit_remaining'])


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(
        sources=dict(type='list', elements='str', required=True),
        state=dict(type='str', choices=['read', 'reset'], default='read'),
        force=dict(type='bool', default=False),
        open_values=dict(type='list', elements='str', default=['OPEN']),
        state_key=dict(type='str', default='circuit:{source}:state', no_log=False),
        failures_key=dict(type='str', default='circuit:{source}:failures', no_log=False),
        rate_limit_key=dict(type='str', default='rate_limit:{source}:remaining', no_log=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if not params['sources']:
        module.fail_json(msg='sources must name at least one source')
    templates = dict((kind, params[kind]) for kind in ('state_key', 'failures_key', 'rate_limit_key'))
    try:
        checked_templates(templates)
        for source in params['sources']:
            key_for(templates['state_key'], source)
    except CircuitError as error:
        module.fail_json(msg=str(error))
    client = redis_connect_module(module)
    results, reset, before_text, after_text = {}, [], '', ''
    try:
        breakers = CircuitBreakers(client, templates=templates, open_values=params['open_values'])
        # validate every source before changing any
        reads = dict((source, breakers.read(source)) for source in params['sources'])
        for source in params['sources']:
            if params['state'] == 'reset':
                changed, before, after = breakers.reset(source, force=params['force'], check_mode=module.check_mode)
                if changed:
                    reset.append(source)
            else:
                before = after = reads[source]
            results[source] = after
            before_text += '%s: %s' % (source, _line(before))
            after_text += '%s: %s' % (source, _line(after))
    except CircuitError as error:
        module.fail_json(msg=str(error))
    except RedisError as error:
        module.fail_json(msg='Redis error: %s' % one_line(error))
    result = dict(changed=bool(reset), sources=results, reset=reset)
    if module._diff:
        result['diff'] = dict(before=before_text, after=after_text)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
