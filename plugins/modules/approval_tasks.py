#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: approval_tasks
short_description: Resolve CERNIQ HITL SLA breaches (release, escalate, auto-approve approval tasks)
description:
  - Runbook 2.3 (HITL SLA Breach) on the C(approval_tasks) table. M(cerniq.ops.approval_tasks_info) reports the
    breached tasks and the workload of every operator (it was C(action=report) of this module before 1.0.0).
  - O(state=released) puts the C(assigned) tasks of O(operators) (default the overloaded ones, above
    O(max_tasks_per_operator)) that are due within O(due_within) back to the unassigned C(pending) pool
    (runbook 2.3 step 2), or gives them to the operator O(assign_to).
  - O(state=escalated) escalates every breached task not yet escalated since it breached through the HITL
    API (C(POST <api_url>/api/v1/approvals/<id>/escalate), bearer O(api_token), JSON
    C({"escalateTo":"<user id>", "reason":"<text>"})) to O(escalate_to) (the runbook's named manager) or, by
    default, the assignee's manager. The
    task row is locked during the call and the escalation is recorded in the same transaction
    (C(escalation_level) + 1, C(escalated_at), a row in C(approval_task_escalations)), so a rerun or a
    concurrent run never escalates a task twice. The escalation is written before the call and committed only
    when the API accepted it, so a database error stops before any call and a failed call leaves the task
    unchanged; the module fails after trying the others, listing them in RV(escalation_failures).
  - O(state=approved) approves C(pending) tasks whose type is in O(approval_types) and whose
    C(metadata.confidence) is at least O(min_confidence) (only overdue ones unless O(only_overdue=false)), at
    most O(limit), recording O(reason) and O(decided_by) for the audit trail. Only where the policy
    allows it.
  - O(state) names what the run leaves behind; it was C(action) (C(release), C(escalate), C(auto_approve)) before
    1.0.0 and has no default, so a task written for the old default (a report) fails instead of changing rows.
  - Every option is checked before connecting (bounds below; UUIDs; texts without NUL bytes); a table the
    state needs that does not exist ends the task with one line naming it, before anything is read or changed.
  - The result never uses a key Ansible interprets (C(skipped), C(failed)). Tasks not escalated are in
    RV(not_escalated), failed calls in RV(escalation_failures).
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.api
  - cerniq.ops.approvals
attributes:
  check_mode:
    support: full
    description: Reports the tasks that would be released, escalated or approved; no request is sent.
  diff_mode:
    support: full
    description: Each affected task before and after.
options:
  state:
    description: What the run leaves behind.
    type: str
    choices: [released, escalated, approved]
    required: true
  operators:
    description: With O(state=released), the operators (user ids or e-mails) whose tasks to release; the
      overloaded ones when unset (an empty list is refused).
    type: list
    elements: str
  assign_to:
    description:
      - With O(state=released), the operator (user id or e-mail) who gets the released tasks (they stay
        C(assigned)); by default they go back to the unassigned C(pending) pool like the runbook's step 2.
      - Must be an active user and not one of the operators whose tasks are released; refused otherwise.
    type: str
  due_within:
    description:
      - With O(state=released), release tasks due within this long, a duration with a unit (runbook C(2h)); C(0s)
        releases only overdue tasks; at most C(365d).
      - Called C(window_minutes) (a number of minutes) before 1.0.0; a number without a unit is refused.
    type: str
    default: 2h
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
    description: With O(state=escalated), only these tasks (UUIDs).
    type: list
    elements: str
  limit:
    description:
      - With O(state=escalated), send at most this many escalations (oldest breach first); the others are
        listed in RV(not_escalated) for the next run. A failed call counts; a task without an escalation target
        or taken by another run does not.
      - With O(state=approved), approve at most this many tasks (oldest due first); tasks locked by another
        run are skipped and do not count.
      - Unset means no limit; otherwise 1 to 1000000 (0 and negative values are refused). Called C(max_tasks)
        and C(max_count) before 1.0.0.
    type: int
  approval_types:
    description: With O(state=approved), the approval types the policy allows.
    type: list
    elements: str
    default: [dedup_review]
  min_confidence:
    description: With O(state=approved), the minimum C(metadata.confidence), greater than 0 and at most 1.
    type: float
    default: 0.9
  only_overdue:
    description: With O(state=approved), only tasks past C(due_at).
    type: bool
    default: true
  decided_by:
    description: With O(state=approved), recorded in C(decided_by).
    type: str
    default: cerniq.ops auto-approve
  escalations_table:
    description: Table recording the escalations (C([schema.]name)); needed by O(state=escalated) only.
    type: str
    default: approval_task_escalations
seealso:
  - module: cerniq.ops.approval_tasks_info
'''

EXAMPLES = r'''
- name: Give the overloaded operators' urgent tasks back to the pool
  cerniq.ops.approval_tasks:
    login_db: cerniq_db
    state: released
    max_tasks_per_operator: 10
    due_within: 2h

- name: Escalate breached tasks to the assignees' managers (unassigned ones to the team lead)
  cerniq.ops.approval_tasks:
    login_db: cerniq_db
    state: escalated
    api_url: https://api.cerniq.app
    api_token: "{{ vault_cerniq_admin_token }}"
    fallback_escalate_to: team.lead@cerniq.app

- name: Auto-approve confident duplicate reviews (policy)
  cerniq.ops.approval_tasks:
    login_db: cerniq_db
    state: approved
    approval_types: [dedup_review]
    min_confidence: 0.90
    limit: 50
'''

RETURN = r'''
released:
  description: Tasks put back to the pool or given to O(assign_to) (with C(previous_assignee)).
  returned: when state is released
  type: list
  elements: dict
assigned_to:
  description: The user id of O(assign_to), or null when the tasks went back to the pool.
  returned: when state is released
  type: str
operators:
  description: The operators (user ids) whose tasks were released (O(operators) resolved, or the overloaded ones).
  returned: when state is released
  type: list
  elements: str
escalated:
  description: Tasks escalated (C(id), C(escalate_to), C(level), C(api_status)).
  returned: when state is escalated
  type: list
  elements: dict
not_escalated:
  description:
    - Breached tasks not escalated by this run, with C(id) and C(reason) (no escalation target, taken by another
      run, over O(limit)).
    - Called C(skipped) before 1.0.0 (a key Ansible reads as the task's status).
  returned: when state is escalated
  type: list
  elements: dict
escalation_failures:
  description:
    - Tasks whose API call failed (left unchanged), with C(error) and C(api_status) when the API answered.
    - Called C(failed) before 1.0.0 (a key Ansible reads as the task's status).
  returned: when state is escalated
  type: list
  elements: dict
approved:
  description: Tasks auto-approved (C(id), C(approval_type), C(confidence), C(due_at)).
  returned: when state is approved
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.api import api_argument_spec, module_post
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.approvals import (
    APPROVALS_ARGUMENT_SPEC, DEFAULT_APPROVE_REASON, DEFAULT_ESCALATION_REASON, auto_approve, check_options,
    escalate, release, required_tables)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    DATABASE_ERRORS, CerniqError, database_error, require_tables)


def _lines(items, text):
    return ''.join('%s: %s\n' % (item['id'], text(item)) for item in items)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(api_argument_spec())
    argument_spec.update(APPROVALS_ARGUMENT_SPEC)
    argument_spec.update(
        state=dict(type='str', choices=['released', 'escalated', 'approved'], required=True),
        operators=dict(type='list', elements='str'),
        assign_to=dict(type='str'),
        due_within=dict(type='str', default='2h'),
        escalate_to=dict(type='str'),
        fallback_escalate_to=dict(type='str'),
        reason=dict(type='str'),
        escalated_by=dict(type='str', default='cerniq.ops'),
        task_ids=dict(type='list', elements='str'),
        limit=dict(type='int'),
        approval_types=dict(type='list', elements='str', default=['dedup_review']),
        min_confidence=dict(type='float', default=0.9),
        only_overdue=dict(type='bool', default=True),
        decided_by=dict(type='str', default='cerniq.ops auto-approve'),
        escalations_table=dict(type='str', default='approval_task_escalations'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('state', 'escalated', ('api_url', 'api_token'))])
    p = module.params
    tables = dict(tasks=p['tasks_table'], users=p['users_table'], escalations=p['escalations_table'])
    try:
        check_options(p)
    except CerniqError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, required_tables(p['state'], tables))
        if p['state'] == 'released':
            result = release(conn, p['operators'], p['max_tasks_per_operator'], p['due_within'], p['tenant_id'],
                             tables, check_mode=module.check_mode, assign_to=p['assign_to'])
            after = 'assigned to %s' % result['assigned_to'] if result['assigned_to'] else 'pending, unassigned'
            result['diff'] = dict(
                before=_lines(result['released'], lambda t: 'assigned to %s' % t['previous_assignee']),
                after=_lines(result['released'], lambda t: after))
        elif p['state'] == 'escalated':
            result = escalate(conn, module_post(module), p['api_url'], p['reason'] or DEFAULT_ESCALATION_REASON,
                              p['escalate_to'], p['escalated_by'], p['task_ids'], p['limit'], p['tenant_id'],
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
            result = auto_approve(conn, p['approval_types'], p['min_confidence'], p['only_overdue'], p['limit'],
                                  p['reason'] or DEFAULT_APPROVE_REASON, p['decided_by'], p['tenant_id'], tables,
                                  check_mode=module.check_mode)
            result['diff'] = dict(before=_lines(result['approved'], lambda t: 'pending'),
                                  after=_lines(result['approved'], lambda t: 'approved (%s)' % p['decided_by']))
    except CerniqError as error:
        fail_engine_error(module, error)
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
