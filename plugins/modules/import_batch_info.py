#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: import_batch_info
short_description: Find CERNIQ imports stuck in processing
description:
  - Runbook 2.1 (Import Stuck in Processing), diagnosis. A batch of C(bronze_import_batches) is stuck when its
    status is C(processing), it started more than O(stuck_after) ago, its row has not been updated (no progress)
    for as long and no C(bronze_contacts) row of it was created for as long. Changes nothing.
  - Reports the stuck batches (progress, rows, minutes without progress, queue and job ids) and their BullMQ
    queues, ready for M(cerniq.ops.import_batch) and M(cerniq.ops.bullmq_queue).
  - Replaces C(state=stuck) of M(cerniq.ops.import_batch) before 1.0.0.
  - Every option is checked before connecting; a missing table ends the task with one line naming it.
version_added: 1.0.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.import_batches
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only; nothing to diff.
seealso:
  - module: cerniq.ops.import_batch
'''

EXAMPLES = r'''
- name: Imports stuck for more than an hour
  cerniq.ops.import_batch_info:
    login_db: cerniq_db
    stuck_after: 1h
  register: stuck
'''

RETURN = r'''
batches:
  description: The batches found stuck, oldest first.
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
queues:
  description: BullMQ queues of the stuck batches, with their job ids.
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
    IMPORTS_ARGUMENT_SPEC, check_options, find_stuck, queues_of, tables)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(IMPORTS_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:
        check_options(p)
    except CerniqError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, tables(p['batches_table'], p['contacts_table']))
        batches = find_stuck(conn, p['stuck_after'], p['ids'], p['tenant_id'], p['batches_table'],
                             p['contacts_table'])
    except CerniqError as error:
        fail_engine_error(module, error)
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(changed=False, batches=batches, queues=queues_of(batches))


if __name__ == '__main__':
    main()
