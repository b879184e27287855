#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: approval_tasks
short_description: Diagnose and resolve CERNIQ HITL SLA breaches (approval tasks)
description:
  - Runbook 2.3 (HITL SLA Breach) on the C(approval_tasks) table.
  - O(action=report) lists the breached tasks (C(pending) and past C(due_at)) and the workload of every
    operator (pending and assigned tasks, overdue ones, average wait); operators above
    O(max_tasks_per_operator) are RV(overloaded).
  - O(action=release) puts the C(assigned) tasks of O(operators) (default the overloaded ones) that are due
    within O(window_minutes) back to the unassigned C(pending) pool (runbook 2.3 step 2), or gives them to the
    operator O(assign_to).
  - O(action=escalate) escalates every breached task not yet escalated since it breached through the HITL
    API (C(POST <api_url>/api/v1/approvals/<id>/escalate), bearer O(api_token), JSON
    C({"escalateTo":"<user id>", "reason":"<text>"})) to O(escalate_to) (the runbook's named manager) or, by
    default, the assignee's manager. The
    task row is locked during the call and the escalation is recorded in the same transaction
    (C(escalation_level) + 1, C(escalated_at), a row in C(approval_task_escalations)), so a rerun or a
    concurrent run never escalates a task twice. The escalation is written before the call and committed only
    when the API accepted it, so a database error stops before any call and a failed call leaves the task
    unchanged; the module fails after trying the others, listing them in RV(escalation_failures).
  - O(action=auto_approve) approves C(pending) tasks whose type is in O(approval_types) and whose
    C(metadata.confidence) is at least O(min_confidence) (only overdue ones unless O(only_overdue=false)), at
    most O(max_count), recording O(reason) and O(decided_by) for the audit trail. Only where the policy
    allows it.
  - Every option is checked before connecting (bounds below; UUIDs; texts without NUL bytes); a table the
    action needs that does not exist ends the task with one line naming it, before anything is read or changed.
  - The result never uses a key Ansible interprets (C(skipped), C(failed)). Tasks not escalated are in
    RV(not_escalated), failed calls in RV(escalation_failures).
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.api
attributes:
  check_mode:
    support: full
    description: Reports the tasks that would be released, escalated or approved; no request is sent.
  diff_mode:
    support: full
    description: Each affected task before and after.
options:
  action:
    description: What to do.
    type: str
    choices: [report, release, escalate, auto_approve]
    default: report
  tenant_id:
    description: Only tasks of this tenant (a UUID; every tenant when unset).
    type: str
  max_tasks_per_operator:
    description: An operator with more pending and assigned tasks than this is overloaded (0 to 1000000).
    type: int
    default: 10
  operators:
    description: With O(action=release), the operators (user ids or e-mails) whose tasks to release; the
      overloaded ones when unset (an empty list is refused).
    type: list
    elements: str
  assign_to:
    description:
      - With O(action=release), the operator (user id or e-mail) who gets the released tasks (they stay
        C(assigned)); by default they go back to the unassigned C(pending) pool like the runbook's step 2.
      - Must be an active user and not one of the operators whose tasks are released; refused otherwise.
    type: str
  window_minutes:
    description: With O(action=release), release tasks due within this many minutes (runbook 2 hours; 0 to
      525600, one year; 0 releases only overdue tasks).
    type: int
    default: 120
  escalate_to:
    description:
      - User id or e-mail to escalate every task to (the runbook's C(<manager_user_id>)); by default the manager
        of each task's assignee.
      - An unknown or inactive user is refused before anything is sent.
    type: str
  fallback_escalate_to:
    description: User id or e-mail for tasks that are unassigned or whose assignee has no manager (they are
      not escalated and reported in RV(not_escalated) when unset).
    type: str
  reason:
    description:
      - Escalation reason (default C(SLA breach - manual escalation)) or decision reason of an auto-approval
        (default C(Auto-approved due to SLA breach)).
    type: str
  escalated_by:
    description: Recorded as the author of each escalation.
    type: str
    default: cerniq.ops
  task_ids:
    description: With O(action=escalate), only these tasks (UUIDs).
    type: list
    elements: str
  max_tasks:
    description:
      - With O(action=escalate), send at most this many escalations (oldest breach first); the others are
        listed in RV(not_escalated) for the next run. A failed call counts; a task without an escalation target
        or taken by another run does not.
      - Unset means no limit; otherwise 1 to 1000000 (0 and negative values are refused). Same meaning as
        O(max_count).
    type: int
  approval_types:
    description: With O(action=auto_approve), the approval types the policy allows.
    type: list
    elements: str
    default: [dedup_review]
  min_confidence:
    description: With O(action=auto_approve), the minimum C(metadata.confidence), greater than 0 and at most 1.
    type: float
    default: 0.9
  only_overdue:
    description: With O(action=auto_approve), only tasks past C(due_at).
    type: bool
    default: true
  max_count:
    description:
      - With O(action=auto_approve), approve at most this many tasks (oldest due first); tasks locked by another
        run are skipped and do not count.
      - Unset means no limit; otherwise 1 to 1000000 (0 and negative values are refused). Same meaning as
        O(max_tasks).
    type: int
  decided_by:
    description: With O(action=auto_approve), recorded in C(decided_by).
    type: str
    default: cerniq.ops auto-approve
  tasks_table:
    description: Table of the approval tasks (C([schema.]name)).
    type: str
    default: approval_tasks
  users_table:
    description: Table of the users (C([schema.]name)).
    type: str
    default: users
  escalations_table:
    description: Table recording the escalations (C([schema.]name)); needed by O(action=escalate) only.
    type: str
    default: approval_task_escalations
'''

EXAMPLES = r'''
- name: Diagnose the SLA breach
  cerniq.ops.approval_tasks:
    login_db: cerniq_db
    action: report
  register: hitl

- name: Give the overloaded operators' urgent tasks back to the pool
  cerniq.ops.approval_tasks:
    login_db: cerniq_db
    action: release
    max_tasks_per_operator: 10
    window_minutes: 120

- name: Escalate breached tasks to the assignees' managers (unassigned ones to the team lead)
  cerniq.ops.approval_tasks:
    login_db: cerniq_db
    action: escalate
    api_url: https://api.cerniq.app
    api_token: "{{ vault_cerniq_admin_token }}"
    fallback_escalate_to: team.lead@cerniq.app

- name: Auto-approve confident duplicate reviews (policy)
  cerniq.ops.approval_tasks:
    login_db: cerniq_db
    action: auto_approve
    approval_types: [dedup_review]
    min_confidence: 0.90
    max_count: 50
'''

RETURN = r'''
breached:
  description:
    - Pending tasks past due (O(action=report)), oldest first, with C(overdue_minutes), C(escalation_level),
      C(escalated_at) and C(escalated_since_breach) (true when escalated at or after C(due_at)).
  returned: when action is report
  type: list
  elements: dict
workload:
  description: Per operator, C(pending_tasks) (pending and assigned), C(assigned_tasks), C(overdue_tasks),
    C(avg_wait_hours).
  returned: when action is report
  type: list
  elements: dict
overloaded:
  description: The operators of RV(workload) above O(max_tasks_per_operator).
  returned: when action is report
  type: list
  elements: dict
breached_count:
  description: How many tasks RV(breached) lists.
  returned: when action is report
  type: int
overloaded_count:
  description: How many operators RV(overloaded) lists.
  returned: when action is report
  type: int
released:
  description: Tasks put back to the pool or given to O(assign_to) (with C(previous_assignee)).
  returned: when action is release
  type: list
  elements: dict
assigned_to:
  description: The user id of O(assign_to), or null when the tasks went back to the pool.
  returned: when action is release
  type: str
operators:
  description: The operators (user ids) whose tasks were released (O(operators) resolved, or the overloaded ones).
  returned: when action is release
  type: list
  elements: str
escalated:
  description: Tasks escalated (C(id), C(escalate_to), C(level), C(api_status)).
  returned: when action is escalate
  type: list
  elements: dict
not_escalated:
  description:
    - Breached tasks not escalated by this run, with C(id) and C(reason) (no escalation target, taken by another
      run, over O(max_tasks)).
    - Called C(skipped) before 1.0.0 (a key Ansible reads as the task's status).
  returned: when action is escalate
  type: list
  elements: dict
escalation_failures:
  description:
    - Tasks whose API call failed (left unchanged), with C(error) and C(api_status) when the API answered.
    - Called C(failed) before 1.0.0 (a key Ansible reads as the task's status).
  returned: when action is escalate
  type: list
  elements: dict
approved:
  description: Tasks auto-approved (C(id), C(approval_type), C(confidence), C(due_at)).
  returned: when action is auto_approve
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.api import api_argument_spec, module_post
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.approvals import (
    DEFAULT_APPROVE_REASON, DEFAULT_ESCALATION_REASON, auto_approve, check_options, escalate, release, report,
    required_tables)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    DATABASE_ERRORS, CerniqError, database_error, require_tables)


def _lines(items, text):
    return ''.join('%s: %s\n' % (item['id'], text(item)) for item in items)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(api_argument_spec())
    argument_spec.update(
        action=dict(type='str', choices=['report', 'release', 'escalate', 'auto_approve'], default='report'),
        tenant_id=dict(type='str'),
        max_tasks_per_operator=dict(type='int', default=10),
        operators=dict(type='list', elements='str'),
        assign_to=dict(type='str'),
        window_minutes=dict(type='int', default=120),
        escalate_to=dict(type='str'),
        fallback_escalate_to=dict(type='str'),
        reason=dict(type='str'),
        escalated_by=dict(type='str', default='cerniq.ops'),
        task_ids=dict(type='list', elements='str'),
        max_tasks=dict(type='int'),
        approval_types=dict(type='list', elements='str', default=['dedup_review']),
        min_confidence=dict(type='float', default=0.9),
        only_overdue=dict(type='bool', default=True),
        max_count=dict(type='int'),
        decided_by=dict(type='str', default='cerniq.ops auto-approve'),
        tasks_table=dict(type='str', default='approval_tasks'),
        users_table=dict(type='str', default='users'),
        escalations_table=dict(type='str', default='approval_task_escalations'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('action', 'escalate', ('api_url', 'api_token'))])
    p = module.params
    tables = dict(tasks=p['tasks_table'], users=p['users_table'], escalations=p['escalations_table'])
    try:
        check_options(p)
    except CerniqError as error:
        module.fail_json(msg=str(error))
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, required_tables(p['action'], tables))
        if p['action'] == 'report':
            result = report(conn, p['max_tasks_per_operator'], p['tenant_id'], tables)
            result['changed'] = False
        elif p['action'] == 'release':
            result = release(conn, p['operators'], p['max_tasks_per_operator'], p['window_minutes'], p['tenant_id'],
                             tables, check_mode=module.check_mode, assign_to=p['assign_to'])
            after = 'assigned to %s' % result['assigned_to'] if result['assigned_to'] else 'pending, unassigned'
            result['diff'] = dict(
                before=_lines(result['released'], lambda t: 'assigned to %s' % t['previous_assignee']),
                after=_lines(result['released'], lambda t: after))
        elif p['action'] == 'escalate':
            result = escalate(conn, module_post(module), p['api_url'], p['reason'] or DEFAULT_ESCALATION_REASON,
                              p['escalate_to'], p['escalated_by'], p['task_ids'], p['max_tasks'], p['tenant_id'],
                              tables, check_mode=module.check_mode, fallback_to=p['fallback_escalate_to'])
            result['diff'] = dict(
                before=_lines(result['escalated'], lambda t: 'escalation level %d' % (t['level'] - 1)),
                after=_lines(result['escalated'],
                             lambda t: 'escalation level %d to %s' % (t['level'], t['escalate_to'])))
            failures = result['escalation_failures']
            if failures:
                module.fail_json(msg='escalation failed for %d task(s): %s' % (
                    len(failures), '; '.join('%s: %s' % (f['id'], f['error']) for f in failures)), **result)
        else:
            result = auto_approve(conn, p['approval_types'], p['min_confidence'], p['only_overdue'], p['max_count'],
                                  p['reason'] or DEFAULT_APPROVE_REASON, p['decided_by'], p['tenant_id'], tables,
                                  check_mode=module.check_mode)
            result['diff'] = dict(before=_lines(result['approved'], lambda t: 'pending'),
                                  after=_lines(result['approved'], lambda t: 'approved (%s)' % p['decided_by']))
    except CerniqError as error:
        module.fail_json(msg=str(error))
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
