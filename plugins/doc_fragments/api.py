# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The options of plugins/module_utils/cerniq/api.py (API_ARGUMENT_SPEC).
    DOCUMENTATION = r'''
options:
  api_url:
    description: Base URL of the CERNIQ API, for example C(https://api.cerniq.app).
    type: str
  api_token:
    description:
      - Bearer token of the CERNIQ API, sent in the C(Authorization) header only.
      - Falls back to the E(CERNIQ_API_TOKEN) environment variable. Never logged.
    type: str
  validate_certs:
    description: Verify the API's TLS certificate.
    type: bool
    default: true
  timeout:
    description:
      - How long to wait for each API call, a duration with a unit (C(30s)); from C(1s) to C(1h).
        A number without a unit is refused.
    type: str
    default: 30s
'''
