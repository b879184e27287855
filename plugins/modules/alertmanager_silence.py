#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: alertmanager_silence
short_description: Create, extend or expire an Alertmanager silence idempotently
description:
  - Manages one silence through the Alertmanager v2 API. The silence is identified by its O(matchers)
    (as a set, in any order), O(created_by) and O(comment); a second run with the same three finds the
    silence the first one made (active or pending) instead of adding another one.
  - With O(state=present) a missing silence is created; an existing one keeps its id and start and gets
    the wanted end (extended or shortened) when its end differs by more than 5 seconds, otherwise
    nothing is sent. Further live silences with the same identity (made by hand, for example) are
    expired, so exactly one remains.
  - With O(state=expired) every live silence with that identity is expired (Alertmanager keeps it
    listed as expired until its retention ends).
  - Refuses a blanket silence - matchers that all match the empty string would also silence every
    alert without those labels - before anything is sent (Alertmanager refuses it too).
  - Against an Alertmanager cluster, the change is made on the first member that answers and then
    awaited on every other member (see O(url)).
version_added: 0.1.0
author:
  - cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.alertmanager
attributes:
  check_mode:
    support: full
    description: Only the GET is sent; the result says what would be created, extended, shortened or expired.
  diff_mode:
    support: full
    description: The silence before and after (empty when there is none).
options:
  matchers:
    description:
      - Label matchers of the silence, each as text - C(alertname="WorkerDown"), C(instance=~"worker1:.*"),
        C(queue!="x"), C(job!~"node|sql") - or as a dict with C(name), C(value), C(is_regex) (default
        false) and C(is_equal) (default true).
      - Regular expressions are anchored by Alertmanager (they must match the whole label value).
    type: list
    elements: raw
    required: true
  created_by:
    description: Creator recorded in the silence; part of its identity.
    type: str
    default: cerniq.ops
  comment:
    description:
      - Comment recorded in the silence; part of its identity, so keep it stable between runs (for
        example C(cerniq.ops daily maintenance of db1)), not a time stamp.
    type: str
    required: true
  state:
    description: Whether the silence should be in force (V(present)) or expired (V(expired)).
    type: str
    choices: [present, expired]
    default: present
  duration:
    description:
      - Length of the silence from its start, as a duration with a unit (C(90m), C(2h), C(1h30m)). A new
        silence starts now (or at O(starts_at)); an existing one keeps its start, so a rerun is no change.
      - One of O(duration) and O(ends_at) is required with O(state=present).
    type: str
  ends_at:
    description: Absolute end of the silence (ISO 8601, for example C(2026-11-29T06:40:00Z)).
    type: str
  starts_at:
    description:
      - Start of a new silence (ISO 8601); default now. A start in the future makes the silence pending
        until then. Given for an existing silence with a different start, the silence is moved.
    type: str
notes:
  - Tested against real Alertmanager 0.25 processes, single and as a two-member cluster
    (tests/integration/test_alertmanager_silence.py).
seealso:
  - module: cerniq.ops.alertmanager_silence_info
  - name: Alertmanager silences
    description: How silences work, and the v2 API.
    link: https://prometheus.io/docs/alerting/latest/alertmanager/#silences
'''

EXAMPLES = r'''
- name: Silence the worker alerts of worker1 for a restart (10 minutes)
  cerniq.ops.alertmanager_silence:
    url: http://monitor1:9093
    matchers:
      - alertname="WorkerDown"
      - instance="worker1:9464"
    comment: cerniq.ops restart of cerniq-workers-ingest
    duration: 10m
  register: restart_silence

- name: Expire it when the restart is done
  cerniq.ops.alertmanager_silence:
    url: http://monitor1:9093
    matchers:
      - alertname="WorkerDown"
      - instance="worker1:9464"
    comment: cerniq.ops restart of cerniq-workers-ingest
    state: expired

- name: A planned database window on both cluster members, until a fixed end
  cerniq.ops.alertmanager_silence:
    url: [http://monitor1:9093, http://monitor2:9093]
    matchers:
      - {name: alertname, value: "PostgresSlowQueries|PostgresConnections", is_regex: true}
      - {name: instance, value: "db1:9187"}
    created_by: ops-team
    comment: PostgreSQL 15.8 minor upgrade (CHG-1234)
    starts_at: "2026-12-05T22:00:00Z"
    ends_at: "2026-12-06T00:00:00Z"
'''

RETURN = r'''
action:
  description: What was (or, in check mode, would be) done - V(created), V(extended), V(shortened), V(expired) or V(unchanged).
  returned: always
  type: str
  sample: created
silence:
  description:
    - The silence after the change (in check mode, as it would be; its id is null when it would be created).
    - After O(state=expired), the silence that was expired; empty when none was live.
  returned: always
  type: dict
  sample:
    id: 5c3b6a5e-8f0e-4b8e-9a53-2c9d8e1f7a10
    state: active
    matchers: ['alertname="WorkerDown"', 'instance="worker1:9464"']
    starts_at: "2026-11-29T06:40:00.412Z"
    ends_at: "2026-11-29T06:50:00.412Z"
    created_by: cerniq.ops
    comment: cerniq.ops restart of cerniq-workers-ingest
expired_duplicates:
  description: Ids of further live silences with the same identity that were (or would be) expired.
  returned: always
  type: list
  elements: str
  sample: []
cluster:
  description: The member that took the change, the members that were seen to agree, and those that did not answer.
  returned: always
  type: dict
  contains:
    written_to:
      description: URL of the member the silences were read from and written to.
      type: str
    verified_on:
      description: URLs of the other members that were seen to show the change.
      type: list
      elements: str
    unreachable:
      description: Members that did not answer, with the error.
      type: dict
  sample:
    written_to: http://monitor1:9093
    verified_on: [http://monitor2:9093]
    unreachable: {}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.alertmanager_silence import (
    ALERTMANAGER_ARGUMENT_SPEC,
    SilenceError,
    ensure,
    module_cluster,
)
from ansible_collections.cerniq.ops.plugins.module_utils.durations import parse_duration


def main():
    argument_spec = dict(ALERTMANAGER_ARGUMENT_SPEC)
    argument_spec.update(
        matchers=dict(type='list', elements='raw', required=True),
        created_by=dict(type='str', default='cerniq.ops'),
        comment=dict(type='str', required=True),
        state=dict(type='str', choices=['present', 'expired'], default='present'),
        duration=dict(type='str'),
        ends_at=dict(type='str'),
        starts_at=dict(type='str'),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('duration', 'ends_at')],
        required_if=[('state', 'present', ('duration', 'ends_at'), True)],
        supports_check_mode=True,
    )
    params = module.params
    try:
        cluster, cluster_timeout = module_cluster(module)
        duration = parse_duration(params['duration'], 'duration') if params['duration'] else None
        result = ensure(cluster, params['matchers'], params['created_by'], params['comment'], state=params['state'],
                        duration_seconds=duration, ends_at=params['ends_at'], starts_at=params['starts_at'],
                        check_mode=module.check_mode, cluster_timeout=cluster_timeout)
    except (SilenceError, ValueError) as error:
        fail_engine_error(module, error)

    output = dict(changed=result['changed'], action=result['action'], silence=result['silence'],
                  expired_duplicates=result['expired_duplicates'], cluster=result['cluster'])
    if module._diff:
        output['diff'] = result['diff']
    module.exit_json(**output)


if __name__ == '__main__':
    main()
