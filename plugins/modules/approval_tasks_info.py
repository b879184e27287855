#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: approval_tasks_info
short_description: Diagnose a CERNIQ HITL SLA breach - breached approval tasks and the operators' workload
description:
  - Runbook 2.3 (HITL SLA Breach), diagnosis. Lists the breached tasks (C(pending) and past C(due_at)) and the
    workload of every operator (pending and assigned tasks, overdue ones, average wait); operators above
    O(max_tasks_per_operator) are RV(overloaded). Changes nothing.
  - Replaces C(action=report) of M(cerniq.ops.approval_tasks) before 1.0.0.
  - Every option is checked before connecting; a missing table ends the task with one line naming it.
version_added: 1.0.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.approvals
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only; nothing to diff.
seealso:
  - module: cerniq.ops.approval_tasks
'''

EXAMPLES = r'''
- name: Diagnose the SLA breach
  cerniq.ops.approval_tasks_info:
    login_db: cerniq_db
  register: hitl

- name: Overloaded operators
  ansible.builtin.debug:
    msg: "{{ hitl.overloaded | map(attribute='email') | list }}"
'''

RETURN = r'''
breached:
  description:
    - Pending tasks past due, oldest first, with C(overdue_minutes), C(escalation_level), C(escalated_at) and
      C(escalated_since_breach) (true when escalated at or after C(due_at)).
  returned: always
  type: list
  elements: dict
workload:
  description: Per operator, C(pending_tasks) (pending and assigned), C(assigned_tasks), C(overdue_tasks),
    C(avg_wait_hours).
  returned: always
  type: list
  elements: dict
overloaded:
  description: The operators of RV(workload) above O(max_tasks_per_operator).
  returned: always
  type: list
  elements: dict
breached_count:
  description: How many tasks RV(breached) lists.
  returned: always
  type: int
overloaded_count:
  description: How many operators RV(overloaded) lists.
  returned: always
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.approvals import (
    APPROVALS_ARGUMENT_SPEC, check_options, report, required_tables)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    DATABASE_ERRORS, CerniqError, database_error, require_tables)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(APPROVALS_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    tables = dict(tasks=p['tasks_table'], users=p['users_table'])
    try:
        check_options(p)
    except CerniqError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, required_tables('report', tables))
        result = report(conn, p['max_tasks_per_operator'], p['tenant_id'], tables)
    except CerniqError as error:
        fail_engine_error(module, error)
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
