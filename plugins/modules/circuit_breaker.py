#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: circuit_breaker
short_description: Close the OPEN circuit breakers of external sources in Redis
version_added: 0.1.0
description:
  - With O(state=closed), closes a breaker that is OPEN by deleting its state and failure keys (what the
    runbook does by hand with C(redis-cli DEL)); a breaker that is not OPEN is left alone unless O(force).
    The OPEN check and the delete of the state key are one atomic Lua call.
  - Every source is read (and its keys checked) before any breaker is changed.
  - M(cerniq.ops.circuit_breaker_info) reads the breakers and the rate-limit counters (it was C(state=read)
    of this module before 1.0.0, and O(state=closed) was C(state=reset)).
extends_documentation_fragment:
  - cerniq.ops.redis
  - cerniq.ops.circuit_keys
attributes:
  check_mode:
    support: full
    description: Reports which breakers would be closed; writes nothing.
  diff_mode:
    support: full
    description: State and failure count of each source before and after.
options:
  state:
    description: V(closed) - the OPEN breakers of O(sources) are closed (reset).
    type: str
    choices: [closed]
    required: true
  force:
    description: Close the breaker whatever its state (and clear its failure count).
    type: bool
    default: false
seealso:
  - module: cerniq.ops.circuit_breaker_info
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Close the ANAF breaker if it is stuck OPEN
  cerniq.ops.circuit_breaker:
    sources: [anaf]
    state: closed
'''

RETURN = r'''
sources:
  description: Per source, what was read after the run (see M(cerniq.ops.circuit_breaker_info)).
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
closed:
  description: Sources whose breaker was (or in check mode would be) closed (C(reset) before 1.0.0).
  returned: always
  type: list
  elements: str
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


def _line(entry):
    return 'state=%s failures=%s rate_limit_remaining=%s\n' % (
        entry['state'], entry['failures'], entry['rate_limit_remaining'])


def main():
    argument_spec = redis_argument_spec()
    argument_spec.update(CIRCUIT_ARGUMENT_SPEC)
    argument_spec.update(
        state=dict(type='str', choices=['closed'], required=True),
        force=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        templates = check_options(params)
    except CircuitError as error:
        fail_engine_error(module, error)
    client = redis_connect_module(module)
    results, closed, before_text, after_text = {}, [], '', ''
    try:
        breakers = CircuitBreakers(client, templates=templates, open_values=params['open_values'])
        for source in params['sources']:   # every source checked before any breaker changes
            breakers.read(source)
        for source in params['sources']:
            changed, before, after = breakers.reset(source, force=params['force'], check_mode=module.check_mode)
            if changed:
                closed.append(source)
            results[source] = after
            before_text += '%s: %s' % (source, _line(before))
            after_text += '%s: %s' % (source, _line(after))
    except CircuitError as error:
        fail_engine_error(module, error, closed=closed)
    except RedisError as error:
        module.fail_json(msg='Redis error: %s' % one_line(error), changed=bool(closed), closed=closed)
    result = dict(changed=bool(closed), sources=results, closed=closed)
    if module._diff:
        result['diff'] = dict(before=before_text, after=after_text)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
