#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: signoz_dashboard
short_description: Create, update or remove a SigNoz dashboard, found by its title
description:
  - Upserts a dashboard JSON (the format SigNoz exports and imports, with C(title), C(layout) and
    C(widgets)) through the SigNoz API, identified by its title.
  - C(GET /api/v1/dashboards) finds the dashboard by title; when none exists it is created with
    C(POST /api/v1/dashboards); when the stored one differs it is replaced with
    C(PUT /api/v1/dashboards/<uuid>). Every request carries O(api_key) in the C(SIGNOZ-API-KEY) header.
  - The stored dashboard is unchanged when every key of O(dashboard) has the same value in the stored
    data (recursively). Keys SigNoz adds by itself do not count as a difference, so a re-run reports
    no change and sends nothing but the GET.
  - Two dashboards with the same title are an error (the module refuses to guess).
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
attributes:
  check_mode:
    support: full
    description: Only the GET is sent; the result says what would be created, updated or deleted.
  diff_mode:
    support: full
    description: The stored dashboard data before and the desired data after.
options:
  url:
    description: Base URL of SigNoz, for example C(https://signoz.example.com).
    type: str
    required: true
  api_key:
    description: SigNoz API key (E(SIGNOZ_API_KEY) when unset). Sent only in the C(SIGNOZ-API-KEY) header; never logged.
    type: str
    required: true
  dashboard:
    description:
      - The dashboard JSON (as a dict, for example C(lookup('ansible.builtin.file', 'x.json') | from_json)).
      - Required with O(state=present).
    type: dict
  title:
    description:
      - Title to look the dashboard up by. Defaults to the C(title) of O(dashboard); when both are given,
        O(title) wins and is written into the dashboard.
      - Required with O(state=absent) unless O(dashboard) is given.
    type: str
  state:
    description: Whether the dashboard should exist.
    type: str
    choices: [present, absent]
    default: present
  validate_certs:
    description: Verify the TLS certificate of SigNoz.
    type: bool
    default: true
  timeout:
    description:
      - How long to wait for each API call, a duration with a unit (C(30s)); C(1s) to C(1h).
      - A number of seconds before 1.0.0; a number without a unit is refused.
    type: str
    default: 30s
notes:
  - Tested against a local HTTP server that implements the four calls above and keeps state
    (tests/integration/test_signoz_dashboard.py); SigNoz itself does not run in the test environment.
seealso:
  - name: SigNoz dashboards
    description: Creating, exporting and importing dashboards.
    link: https://signoz.io/docs/userguide/manage-dashboards/
'''

EXAMPLES = r'''
- name: Upload the Etapa 1 overview dashboard
  cerniq.ops.signoz_dashboard:
    url: https://signoz.example.com
    api_key: "{{ vault_signoz_api_key }}"
    dashboard: "{{ lookup('ansible.builtin.file', 'etapa1-overview.signoz.json') | from_json }}"

- name: Remove an old dashboard
  cerniq.ops.signoz_dashboard:
    url: https://signoz.example.com
    api_key: "{{ vault_signoz_api_key }}"
    title: Etapa 1 - Data Pipeline Overview (old)
    state: absent
'''

RETURN = r'''
action:
  description: What was (or, in check mode, would be) done.
  returned: always
  type: str
  sample: updated
id:
  description: UUID of the dashboard (null when a dashboard would be created in check mode, or none exists).
  returned: always
  type: str
  sample: 6b4d1a40-8f2a-4c3e-9d0a-1f2e3d4c5b6a
title:
  description: The title the dashboard was found by.
  returned: always
  type: str
  sample: Etapa 1 - Data Pipeline Overview
'''

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option
from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.signoz import (
    SignozDashboards,
    SignozError,
    ensure,
    module_request,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', required=True),
            api_key=dict(type='str', required=True, no_log=True, fallback=(env_fallback, ['SIGNOZ_API_KEY'])),
            dashboard=dict(type='dict'),
            title=dict(type='str'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            validate_certs=dict(type='bool', default=True),
            timeout=dict(type='str', default='30s'),
        ),
        required_if=[('state', 'present', ['dashboard']), ('state', 'absent', ['title', 'dashboard'], True)],
        supports_check_mode=True,
    )
    params = module.params
    title = params['title'] or (params['dashboard'] or {}).get('title')
    try:
        timeout = duration_option(params['timeout'], 'timeout', 1, 3600)
    except DurationError as error:
        module.fail_json(msg=str(error), title=title)
    dashboards = SignozDashboards(params['url'], module_request(module, params['api_key'], timeout))
    try:
        result = ensure(dashboards, data=params['dashboard'], title=title, state=params['state'],
                        check_mode=module.check_mode)
    except SignozError as error:
        fail_engine_error(module, error, title=title)
    except (OSError, ValueError) as error:
        module.fail_json(msg='SigNoz at %s is not reachable: %s' % (params['url'], error), title=title)

    output = dict(changed=result['changed'], action=result['action'], id=result['id'], title=title)
    if module._diff:
        output['diff'] = result['diff']
    module.exit_json(**output)


if __name__ == '__main__':
    main()
