# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The breakers M(cerniq.ops.circuit_breaker) closes and M(cerniq.ops.circuit_breaker_info) reads
    # (CIRCUIT_ARGUMENT_SPEC in plugins/module_utils/cerniq/circuit.py).
    DOCUMENTATION = r'''
options:
  sources:
    description: Source names, for example C(anaf) and C(termene).
    type: list
    elements: str
    required: true
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
notes:
  - Keys of another Redis type than string are refused, naming the key.
'''
