#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: import_batch
short_description: Cancel CERNIQ imports stuck in processing, safely
description:
  - Runbook 2.1 (Import Stuck in Processing). A batch of C(bronze_import_batches) is stuck when its status
    is C(processing), it started more than O(stuck_after) ago, its row has not been updated (no
    progress) for as long and no C(bronze_contacts) row of it was created for as long.
    M(cerniq.ops.import_batch_info) lists them (it was C(state=stuck) of this module before 1.0.0).
  - O(state=cancelled) sets them to C(cancelled) with O(reason) in C(error_message). The conditions are
    re-checked in the C(UPDATE) itself, so a batch that moved on since the diagnosis is not touched and is
    reported in RV(no_longer_stuck). A second run changes nothing.
  - O(state) has no default (it was V(stuck), a report, before 1.0.0), so a task written for the old default
    fails instead of cancelling batches.
  - RV(queues) names the BullMQ queues and job ids of the cancelled batches, ready for M(cerniq.ops.bullmq_queue)
    (O(cerniq.ops.bullmq_queue#module:state=repaired)).
  - Every option is checked before connecting; a missing O(batches_table) or O(contacts_table) ends the task with
    one line naming it, before anything is read or changed.
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.import_batches
attributes:
  check_mode:
    support: full
    description: Reports the batches that would be cancelled; writes nothing.
  diff_mode:
    support: full
    description: Status of each affected batch before and after.
options:
  state:
    description: V(cancelled) - the stuck batches are cancelled.
    type: str
    choices: [cancelled]
    required: true
  reason:
    description: Recorded in C(error_message) of each cancelled batch (not blank, at most 1000 characters).
    type: str
    default: Manually cancelled - stuck processing
seealso:
  - module: cerniq.ops.import_batch_info
'''

EXAMPLES = r'''
- name: Diagnose imports stuck for more than 30 minutes
  cerniq.ops.import_batch_info:
    login_db: cerniq_db
  register: stuck

- name: Cancel them so the tenant can retry
  cerniq.ops.import_batch:
    login_db: cerniq_db
    state: cancelled
    ids: "{{ stuck.batches | map(attribute='id') }}"
    reason: "Cancelled by on-call (INC-1234) - stuck processing"
  register: cancelled

- name: Repair their stalled BullMQ jobs
  cerniq.ops.bullmq_queue:
    name: "{{ item.name }}"
    state: repaired
  loop: "{{ cancelled.queues }}"
'''

RETURN = r'''
batches:
  description: The batches found stuck (before any change), oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 7b1e...
      tenant_id: 0c3a...
      status: processing
      progress_percent: 37.0
      total_rows: 500
      processed_rows: 185
      started_at: '2026-01-15T08:00:00+00:00'
      stalled_minutes: 117.0
      queue_name: bronze:ingest:csv
      job_ids: [import-7b1e...]
cancelled:
  description: The batches cancelled by this run (in check mode, those that would be).
  returned: always
  type: list
  elements: dict
no_longer_stuck:
  description:
    - Ids found stuck but no longer stuck at the moment of the update (left alone).
    - Called C(skipped) before 1.0.0 (a key Ansible reads as the task's status).
  returned: always
  type: list
  elements: str
queues:
  description: BullMQ queues of the cancelled batches (in check mode, of those that would be).
  returned: always
  type: list
  elements: dict
  sample: [{name: bronze:ingest:csv, job_ids: [import-7b1e...]}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    DATABASE_ERRORS, CerniqError, database_error, require_tables)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.imports import (
    DEFAULT_REASON, IMPORTS_ARGUMENT_SPEC, cancel, check_options, tables)


def _diff(batches, after_status):
    return dict(before=''.join('%s: processing\n' % b['id'] for b in batches),
                after=''.join('%s: %s\n' % (b['id'], after_status) for b in batches))


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(IMPORTS_ARGUMENT_SPEC)
    argument_spec.update(
        state=dict(type='str', choices=['cancelled'], required=True),
        reason=dict(type='str', default=DEFAULT_REASON),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:
        check_options(p)
    except CerniqError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, tables(p['batches_table'], p['contacts_table']))
        outcome = cancel(conn, reason=p['reason'], check_mode=module.check_mode, stuck_after=p['stuck_after'],
                         ids=p['ids'], tenant_id=p['tenant_id'], table=p['batches_table'],
                         contacts_table=p['contacts_table'])
    except CerniqError as error:
        fail_engine_error(module, error)
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(changed=outcome['changed'], batches=outcome['stuck'], cancelled=outcome['cancelled'],
                     no_longer_stuck=outcome['no_longer_stuck'], queues=outcome['queues'],
                     diff=_diff(outcome['cancelled'], 'cancelled'))


if __name__ == '__main__':
    main()
