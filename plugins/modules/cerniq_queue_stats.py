#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cerniq_queue_stats
short_description: Record BullMQ queue counts in the bullmq_queue_stats table of runbook 2.4
description:
  - Runbook 2.4 checks the scoring workers with C(SELECT queue_name, waiting, active, completed, failed FROM
    bullmq_queue_stats). This module writes that table from a queue read - the RV(cerniq.ops.bullmq_queue_info#module:queues)
    of M(cerniq.ops.bullmq_queue_info) - one row per queue, in one statement.
  - C(waiting) is the alert rules' queue depth (wait + prioritized + paused); C(paused) the part held by a paused
    queue; C(active), C(delayed), C(completed), C(failed) as read. C(updated_at) is the time of the read, so the age
    of the numbers is visible to whoever runs the SQL.
  - Queues reported missing (C(exists=false)) are skipped, and queues not in O(queues) are left alone.
  - The task reports C(changed) when a count differs from the stored row; C(updated_at) is refreshed on every run.
version_added: 0.1.0
author:
  - cerniq.ops contributors (@cerniq-ops)
extends_documentation_fragment:
  - cerniq.ops.postgres
attributes:
  check_mode:
    support: full
    description: Reads the stored rows and reports which queues would change; writes nothing.
  diff_mode:
    support: none
    description: RV(changed_queues) names the rows that change.
options:
  queues:
    description: The RV(cerniq.ops.bullmq_queue_info#module:queues) mapping of M(cerniq.ops.bullmq_queue_info).
    type: dict
    required: true
  table:
    description: The snapshot table (C([schema.]name)), with the columns of schema migration C(002_queue_stats.sql).
    type: str
    default: bullmq_queue_stats
seealso:
  - module: cerniq.ops.bullmq_queue_info
'''

EXAMPLES = r'''
- name: Read the queues
  cerniq.ops.bullmq_queue_info:
    names: [bronze:ingest:csv, silver:score:quality]
    ignore_missing: true
    scan_active: false
  register: queues

- name: Keep runbook 2.4's bullmq_queue_stats current
  cerniq.ops.cerniq_queue_stats:
    login_db: cerniq_db
    queues: "{{ queues.queues }}"
'''

RETURN = r'''
rows:
  description: The counts recorded per queue.
  returned: always
  type: dict
  sample: {silver:score:quality: {waiting: 12, active: 2, delayed: 0, completed: 500, failed: 3, paused: 0}}
changed_queues:
  description: Queues whose stored counts differed (or had no row).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.queue_stats import (
    QueueStatsError,
    record_queue_stats,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec,
    postgres_connect_module,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        queues=dict(type='dict', required=True),
        table=dict(type='str', default='bullmq_queue_stats'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    conn = postgres_connect_module(module, autocommit=False)
    try:
        changed, rows = record_queue_stats(conn, module.params['queues'], module.params['table'],
                                           check_mode=module.check_mode)
    except QueueStatsError as error:
        conn.rollback()
        fail_engine_error(module, error)
    except Exception as error:  # psycopg2 errors: wrong columns, permissions
        conn.rollback()
        module.fail_json(msg='recording the queue counts failed: %s' % str(error).strip().splitlines()[0])
    finally:
        conn.close()
    module.exit_json(changed=bool(changed), changed_queues=changed, rows=rows)


if __name__ == '__main__':
    main()
