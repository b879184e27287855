#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: alertmanager_silence_info
short_description: List Alertmanager silences, filtered, for reports and checks
description:
  - Reads the silences of Alertmanager through the v2 API (C(GET /api/v2/silences)) from the first
    member of O(url) that answers, and returns those that pass every filter given.
  - Use it to show which maintenance windows are open, to find the silences a job left behind, or to
    ask whether an alert with given labels would be silenced (O(labels)).
version_added: 0.1.0
author:
  - cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.alertmanager
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
options:
  states:
    description: Only silences in these states.
    type: list
    elements: str
    choices: [active, pending, expired]
    default: [active, pending]
  matchers:
    description:
      - Only silences holding every one of these matchers (same text or dict forms as
        M(cerniq.ops.alertmanager_silence)); a silence may have further matchers.
    type: list
    elements: raw
    default: []
  created_by:
    description: Only silences created by this creator.
    type: str
  comment:
    description: Only silences with exactly this comment.
    type: str
  labels:
    description:
      - Only silences that would silence an alert with exactly these labels (every matcher of the
        silence matches them, as Alertmanager decides).
    type: dict
notes:
  - O(cluster_timeout) is not used (nothing is changed).
seealso:
  - module: cerniq.ops.alertmanager_silence
'''

EXAMPLES = r'''
- name: The maintenance windows cerniq.ops has open
  cerniq.ops.alertmanager_silence_info:
    url: http://monitor1:9093
    created_by: cerniq.ops
  register: windows

- name: Would a WorkerDown alert of worker1 page someone right now?
  cerniq.ops.alertmanager_silence_info:
    url: http://monitor1:9093
    labels: {alertname: WorkerDown, instance: "worker1:9464", severity: sev3}
  register: covering

- name: Say so
  ansible.builtin.debug:
    msg: "{{ 'silenced by ' ~ (covering.silences | map(attribute='comment') | join(', '))
             if covering.silences else 'not silenced' }}"
'''

RETURN = r'''
silences:
  description: The matching silences, the latest end first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Silence id.
      type: str
    state:
      description: V(active), V(pending) or V(expired).
      type: str
    matchers:
      description: Its matchers as text (C(name="value"), C(name=~"regex"), ...).
      type: list
      elements: str
    starts_at:
      description: Start (ISO 8601, UTC).
      type: str
    ends_at:
      description: End (ISO 8601, UTC); for an expired silence, when it was expired.
      type: str
    created_by:
      description: Creator.
      type: str
    comment:
      description: Comment.
      type: str
  sample:
    - id: 5c3b6a5e-8f0e-4b8e-9a53-2c9d8e1f7a10
      state: active
      matchers: ['alertname="PostgresSlowQueries"', 'instance=~"db1(:[0-9]+)?"']
      starts_at: "2026-11-29T02:30:00.120Z"
      ends_at: "2026-11-29T03:40:00.120Z"
      created_by: cerniq.ops
      comment: cerniq.ops daily maintenance of db1 (runbook 3.1)
read_from:
  description: URL of the member the silences were read from.
  returned: always
  type: str
  sample: http://monitor1:9093
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.alertmanager_silence import (
    ALERTMANAGER_ARGUMENT_SPEC,
    SilenceError,
    describe,
    module_cluster,
    select,
)


def main():
    argument_spec = dict(ALERTMANAGER_ARGUMENT_SPEC)
    argument_spec.update(
        states=dict(type='list', elements='str', choices=['active', 'pending', 'expired'],
                    default=['active', 'pending']),
        matchers=dict(type='list', elements='raw', default=[]),
        created_by=dict(type='str'),
        comment=dict(type='str'),
        labels=dict(type='dict'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        cluster = module_cluster(module)[0]
        listing = cluster.read()
        found = select(listing, states=params['states'], matchers=params['matchers'],
                       created_by=params['created_by'], comment=params['comment'],
                       labels={k: str(v) for k, v in params['labels'].items()} if params['labels'] else None)
    except (SilenceError, ValueError) as error:
        fail_engine_error(module, error)
    module.exit_json(changed=False, silences=[describe(s) for s in found], read_from=cluster.primary.url)


if __name__ == '__main__':
    main()
