# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HITL SLA breach procedures (runbook 2.3) on ``approval_tasks`` (plain Python).

- ``report``: overdue pending tasks and the workload of each operator.
- ``release``: tasks assigned to overloaded (or named) operators and due within ``due_within`` (a
  duration with a unit) go back to the unassigned pending pool, or to a named operator (``assign_to``).
- ``escalate``: each breached task not yet escalated since it breached is escalated
  through the HITL API (``POST <api>/api/v1/approvals/<id>/escalate``); the row is
  locked (``FOR UPDATE SKIP LOCKED``) and the escalation written (``escalation_level + 1``,
  ``escalated_at``, a row in ``approval_task_escalations``) before the call, in one
  transaction committed only when the API accepted it, so neither a rerun nor a concurrent
  run escalates twice, and a write that fails stops the task before any call.
- ``auto_approve``: pending tasks of the policy's approval types with a confidence at
  least ``min_confidence`` (and overdue, by default) are approved with a recorded
  reason and ``decided_by``.

HTTP goes through a ``post(url, payload) -> (status, body)`` callable supplied by the
caller (the module passes one built on Ansible's ``open_url``). ``check_options`` checks the
module's options before it connects; ``required_tables`` names the tables a state needs.

``limit`` has one meaning for escalate and auto_approve: unset means no limit; ``N`` (1 to
1,000,000) means the run escalates (sends) or approves at most ``N`` tasks - tasks it cannot act on
(no escalation target, taken by another run) do not count; 0 and negative values are refused.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.api import rejected_message, request_failed_message
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import explicit_transactions, fetch_dicts, transaction
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    MAX_LIMIT, MAX_SECONDS, CerniqError, check_api, check_duration, check_fraction, check_int, check_relation,
    check_text, check_texts, check_uuid, check_uuids)

DEFAULT_TABLES = dict(tasks='approval_tasks', users='users', escalations='approval_task_escalations')
TABLE_OPTIONS = dict(tasks='tasks_table', users='users_table', escalations='escalations_table')
# The tables each state of the module (and the info module's report) reads or writes.
STATE_TABLES = dict(report=('tasks', 'users'), released=('tasks', 'users'),
                    escalated=('tasks', 'users', 'escalations'), approved=('tasks',))
# The options the approval_tasks and approval_tasks_info modules share (documented once in the
# cerniq.ops.approvals doc fragment).
APPROVALS_ARGUMENT_SPEC = dict(
    tenant_id=dict(type='str'),
    max_tasks_per_operator=dict(type='int', default=10),
    tasks_table=dict(type='str', default=DEFAULT_TABLES['tasks']),
    users_table=dict(type='str', default=DEFAULT_TABLES['users']),
)
DEFAULT_ESCALATION_REASON = 'SLA breach - manual escalation'
DEFAULT_APPROVE_REASON = 'Auto-approved due to SLA breach'
DEFAULT_DECIDED_BY = 'cerniq.ops auto-approve'
ESCALATE_PATH = '/api/v1/approvals/{id}/escalate'

# metadata->>'confidence' as a number in [0, 1], NULL when absent, not numeric or out of range (never a cast
# error: the nested CASE tests the text before any cast, and the exponent is bounded so numeric holds it)
_CONFIDENCE = ("(CASE WHEN t.metadata->>'confidence' ~ '^\\s*[0-9]{0,20}\\.?[0-9]{1,20}([eE][-+]?[0-9]{1,3})?\\s*$' "
               "THEN CASE WHEN (t.metadata->>'confidence')::numeric BETWEEN 0 AND 1 "
               "THEN (t.metadata->>'confidence')::numeric::float8 END END)")


class ApprovalError(CerniqError):
    """Bad input: unknown users, bad policy, bad table names."""


def _tables(tables):
    merged = dict(DEFAULT_TABLES)
    merged.update(dict((k, v) for k, v in (tables or {}).items() if v is not None))
    return dict((key, check_relation(TABLE_OPTIONS[key], name)) for key, name in merged.items())


def required_tables(state, tables=None):
    """``{option: quoted table}`` of the tables ``state`` (or ``report``) reads or writes (for ``require_tables``)."""
    quoted = _tables(tables)
    return dict((TABLE_OPTIONS[key], quoted[key]) for key in STATE_TABLES[state])


def check_options(p):
    """Check the options of the approval_tasks module (``p['state']``) or of approval_tasks_info (no
    ``state``) before connecting; raises ``CerniqError`` with one line naming the option."""
    state = p.get('state')
    _tables(dict(tasks=p['tasks_table'], users=p['users_table'], escalations=p.get('escalations_table')))
    check_uuid('tenant_id', p['tenant_id'], optional=True)
    check_int('max_tasks_per_operator', p['max_tasks_per_operator'], 0, MAX_LIMIT)
    if state is None:
        return
    check_duration('due_within', p['due_within'], 0, MAX_SECONDS)
    check_texts('operators', p['operators'], optional=True)
    for name in ('escalate_to', 'fallback_escalate_to', 'assign_to', 'reason'):
        check_text(name, p[name], optional=True)
    check_text('escalated_by', p['escalated_by'])
    check_text('decided_by', p['decided_by'])
    check_uuids('task_ids', p['task_ids'], optional=True)
    check_int('limit', p['limit'], 1, MAX_LIMIT, optional=True)
    check_fraction('min_confidence', p['min_confidence'])
    if state == 'approved':
        check_texts('approval_types', p['approval_types'])
    if state == 'escalated':
        check_api(p)


def _iso(value):
    return value.isoformat() if value is not None else None


def _end_read(conn):
    if not conn.autocommit:
        conn.rollback()


def breached_tasks(conn, tenant_id=None, tables=None):
    t = _tables(tables)
    sql = ("SELECT t.id::text AS id, t.approval_type, t.priority, t.due_at, t.assigned_to::text AS assigned_to, "
           "u.name AS assigned_to_name, t.escalation_level, t.escalated_at, "
           "coalesce(t.escalated_at >= t.due_at, false) AS escalated_since_breach, "
           "round((extract(epoch FROM now() - t.due_at) / 60)::numeric, 1) AS overdue_minutes, "
           "%s AS confidence "
           "FROM %s t LEFT JOIN %s u ON u.id = t.assigned_to "
           "WHERE t.status = 'pending' AND t.due_at < now() %s ORDER BY t.due_at, t.id") % (
        _CONFIDENCE, t['tasks'], t['users'], 'AND t.tenant_id = %(tenant)s::uuid' if tenant_id else '')
    return fetch_dicts(conn, sql, dict(tenant=tenant_id))


def workload(conn, tenant_id=None, tables=None):
    t = _tables(tables)
    sql = ("SELECT u.id::text AS user_id, u.name, u.email, u.manager_id::text AS manager_id, "
           "count(*) AS pending_tasks, count(*) FILTER (WHERE t.status = 'assigned') AS assigned_tasks, "
           "count(*) FILTER (WHERE t.due_at < now()) AS overdue_tasks, "
           "round(avg(extract(epoch FROM (now() - t.created_at)) / 3600)::numeric, 2) AS avg_wait_hours "
           "FROM %s t JOIN %s u ON t.assigned_to = u.id "
           "WHERE t.status IN ('pending', 'assigned') %s "
           "GROUP BY u.id, u.name, u.email, u.manager_id ORDER BY count(*) DESC, u.name") % (
        t['tasks'], t['users'], 'AND t.tenant_id = %(tenant)s::uuid' if tenant_id else '')
    return fetch_dicts(conn, sql, dict(tenant=tenant_id))


def report(conn, max_tasks_per_operator=10, tenant_id=None, tables=None):
    """``dict(breached=[...], workload=[...], overloaded=[...])`` (runbook 2.3 diagnostics)."""
    try:
        breached = breached_tasks(conn, tenant_id, tables)
        load = workload(conn, tenant_id, tables)
    finally:
        _end_read(conn)
    overloaded = [w for w in load if w['pending_tasks'] > int(max_tasks_per_operator)]
    return dict(breached=breached, workload=load, overloaded=overloaded,
                breached_count=len(breached), overloaded_count=len(overloaded))


def resolve_users(conn, refs, tables=None):
    """Map user ids or e-mails (case-insensitive) to ids, in order; raises ``ApprovalError`` naming unknown ones."""
    t = _tables(tables)
    refs = [str(r).strip() for r in refs or []]
    ids = []
    for ref in refs:
        try:
            ids.append(str(uuid.UUID(ref)))
        except ValueError:
            pass
    rows = fetch_dicts(conn, 'SELECT id::text AS id, lower(email) AS email FROM %s WHERE id = ANY(%%(ids)s::uuid[]) '
                       'OR lower(email) = ANY(%%(emails)s)' % t['users'],
                       dict(ids=ids, emails=[ref.lower() for ref in refs]))
    _end_read(conn)
    by_id = set(row['id'] for row in rows)
    by_email = dict((row['email'], row['id']) for row in rows)
    result, unknown = [], []
    for ref in refs:
        try:
            user = str(uuid.UUID(ref))
            user = user if user in by_id else None
        except ValueError:
            user = by_email.get(ref.lower())
        if user is None:
            unknown.append(ref)
        elif user not in result:
            result.append(user)
    if unknown:
        raise ApprovalError('unknown user(s): %s' % ', '.join(unknown))
    return result


def active_user(conn, option, ref, tables=None):
    """The id of the user ``ref`` (id or e-mail) named by ``option``; refuses an unknown or inactive one
    (tasks given or escalated to a deactivated account would wait for nobody)."""
    t = _tables(tables)
    try:
        user = resolve_users(conn, [ref], tables)[0]
    except ApprovalError as error:
        raise ApprovalError('%s: %s' % (option, error))
    row = fetch_dicts(conn, 'SELECT is_active FROM %s WHERE id = %%(id)s::uuid' % t['users'], dict(id=user))
    _end_read(conn)
    if not row or not row[0]['is_active']:
        raise ApprovalError('%s: user %s is not active' % (option, ref))
    return user


def _preview_or_apply(conn, check_mode, preview_sql, apply_sql, params):
    """The tasks a change would touch (check mode: ``preview_sql``, read only) or touched (``apply_sql``, an
    UPDATE ... RETURNING run as one transaction), in due order."""
    if check_mode:
        rows = fetch_dicts(conn, preview_sql, params)
        _end_read(conn)
    else:
        with transaction(conn):
            rows = fetch_dicts(conn, apply_sql, params)
    return sorted(rows, key=lambda r: (r['due_at'], r['id']))


def release(conn, operators=None, max_tasks_per_operator=10, due_within='2h', tenant_id=None, tables=None,
            check_mode=False, assign_to=None):
    """Take the ``assigned`` tasks of ``operators`` (ids or e-mails; default: the overloaded ones) due
    within ``due_within`` (a duration with a unit; '0s': overdue only) from them: back to the unassigned
    ``pending`` pool (runbook 2.3 step 2), or to the operator ``assign_to`` (an active user, not one of
    ``operators``), still ``assigned``.
    Returns ``dict(changed, operators=[ids], released=[tasks], assigned_to=id or None)``."""
    t = _tables(tables)
    target = active_user(conn, 'assign_to', assign_to, tables) if assign_to else None
    if operators:
        user_ids = resolve_users(conn, operators, tables)
    else:
        user_ids = [w['user_id'] for w in report(conn, max_tasks_per_operator, tenant_id, tables)['overloaded']]
    if target in user_ids:
        raise ApprovalError('assign_to %s is one of the operators whose tasks are released' % assign_to)
    if not user_ids:
        return dict(changed=False, operators=[], released=[], assigned_to=target)
    params = dict(users=user_ids, seconds=check_duration('due_within', due_within, 0, MAX_SECONDS),
                  tenant=tenant_id, target=target)
    where = ("t.status = 'assigned' AND t.assigned_to = ANY(%%(users)s::uuid[]) "
             "AND t.due_at < now() + %%(seconds)s * interval '1 second' %s") % (
        'AND t.tenant_id = %(tenant)s::uuid' if tenant_id else '')
    columns = 't.id::text AS id, t.approval_type, t.priority, t.due_at'
    rows = _preview_or_apply(
        conn, check_mode,
        'SELECT %s, t.assigned_to::text AS previous_assignee FROM %s t WHERE %s' % (columns, t['tasks'], where),
        ("UPDATE %s t SET assigned_to = %%(target)s::uuid, "
         "status = CASE WHEN %%(target)s::uuid IS NULL THEN 'pending' ELSE 'assigned' END, updated_at = now() "
         "FROM %s old WHERE old.id = t.id AND %s RETURNING %s, old.assigned_to::text AS previous_assignee")
        % (t['tasks'], t['tasks'], where, columns), params)
    return dict(changed=bool(rows), operators=user_ids, released=rows, assigned_to=target)


def _escalation_candidates(conn, t, tenant_id, task_ids, lock_id=None):
    where = ("t.status = 'pending' AND t.due_at < now() "
             "AND (t.escalated_at IS NULL OR t.escalated_at < t.due_at)")
    if tenant_id:
        where += ' AND t.tenant_id = %(tenant)s::uuid'
    if task_ids is not None:
        where += ' AND t.id = ANY(%(ids)s::uuid[])'
    if lock_id:
        where += ' AND t.id = %(lock)s::uuid'
    sql = ("SELECT t.id::text AS id, t.approval_type, t.priority, t.due_at, t.escalation_level, "
           "t.assigned_to::text AS assigned_to, (SELECT u.manager_id::text FROM %s u WHERE u.id = t.assigned_to) "
           "AS manager_id FROM %s t WHERE %s ORDER BY t.due_at, t.id") % (t['users'], t['tasks'], where)
    if lock_id:
        sql += ' FOR UPDATE OF t SKIP LOCKED'
    return fetch_dicts(conn, sql, dict(tenant=tenant_id, ids=task_ids, lock=lock_id))


def escalate(conn, post, api_url, reason=DEFAULT_ESCALATION_REASON, escalate_to=None, escalated_by='cerniq.ops',
             task_ids=None, limit=None, tenant_id=None, tables=None, check_mode=False, fallback_to=None):
    """Escalate breached tasks not escalated since they breached, oldest breach first.

    ``escalate_to``: a user id or e-mail for every task; by default the assignee's manager, else
    ``fallback_to`` (tasks with neither are not escalated). ``limit``: at most this many escalations
    are sent (a failed call counts; a task without a target or taken by another run does not).
    Returns ``dict(changed, escalated=[...], not_escalated=[{id, reason}], escalation_failures=[{..., error}])``.
    """
    t = _tables(tables)
    if not api_url:
        raise ApprovalError('api_url is required to escalate')
    check_text('reason', reason)
    check_text('escalated_by', escalated_by)
    task_ids = check_uuids('task_ids', task_ids, optional=True)
    limit = check_int('limit', limit, 1, MAX_LIMIT, optional=True)
    target = active_user(conn, 'escalate_to', escalate_to, tables) if escalate_to else None
    fallback = resolve_users(conn, [fallback_to], tables)[0] if fallback_to else None
    candidates = _escalation_candidates(conn, t, tenant_id, task_ids)
    _end_read(conn)
    escalated, not_escalated, failures = [], [], []
    for task in candidates:
        to = target or task['manager_id'] or fallback
        if not to:
            not_escalated.append(dict(id=task['id'],
                                      reason='no escalation target: unassigned or assignee has no manager'))
            continue
        if limit is not None and len(escalated) + len(failures) >= limit:
            not_escalated.append(dict(id=task['id'], reason='over limit (%d): left for the next run' % limit))
            continue
        entry = dict(id=task['id'], escalate_to=to, level=task['escalation_level'] + 1, due_at=task['due_at'])
        if check_mode:
            escalated.append(entry)
            continue
        outcome = _escalate_one(conn, t, post, api_url, task['id'], to, reason, escalated_by, tenant_id)
        if outcome is None:
            not_escalated.append(dict(id=task['id'], reason='escalated or changed by someone else meanwhile'))
        elif outcome.get('error'):
            failures.append(dict(entry, **outcome))
        else:
            escalated.append(dict(entry, **outcome))
    return dict(changed=bool(escalated), escalated=escalated, not_escalated=not_escalated,
                escalation_failures=failures)


def _escalate_one(conn, t, post, api_url, task_id, to, reason, escalated_by, tenant_id):
    """Lock the task, write its escalation, call the API, and commit only when the API accepted it.

    ``None`` when the task is no longer a candidate (another run took it); ``dict(error=...)`` when the call
    failed (nothing written). A database error raises before any call.
    """
    with explicit_transactions(conn):
        if not _escalation_candidates(conn, t, tenant_id, None, lock_id=task_id):
            conn.rollback()
            return None
        with conn.cursor() as cur:
            cur.execute("UPDATE %s SET escalation_level = escalation_level + 1, escalated_at = now(), "
                        "escalated_to = %%(to)s::uuid, updated_at = now() WHERE id = %%(id)s::uuid "
                        "RETURNING escalation_level" % t['tasks'], dict(id=task_id, to=to))
            level = cur.fetchone()[0]
            cur.execute("INSERT INTO %s (task_id, level, escalated_to, reason, escalated_by) "
                        "VALUES (%%s, %%s, %%s, %%s, %%s) RETURNING ctid::text" % t['escalations'],
                        (task_id, level, to, reason, escalated_by))
            record = cur.fetchone()[0]
        url = api_url.rstrip('/') + ESCALATE_PATH.format(id=task_id)
        try:
            status, body = post(url, dict(escalateTo=to, reason=reason))
        except Exception as error:  # network errors: keep the task as it was
            conn.rollback()
            return dict(error=request_failed_message(error))
        if not 200 <= int(status) < 300:
            conn.rollback()
            return dict(error=rejected_message('HITL API', status, body), api_status=int(status))
        with conn.cursor() as cur:
            cur.execute('UPDATE %s SET api_status = %%s WHERE ctid = %%s::tid AND task_id = %%s AND level = %%s'
                        % t['escalations'], (int(status), record, task_id, level))
        conn.commit()
        return dict(level=level, api_status=int(status))


def auto_approve(conn, approval_types, min_confidence=0.90, only_overdue=True, limit=None,
                 reason=DEFAULT_APPROVE_REASON, decided_by=DEFAULT_DECIDED_BY, tenant_id=None, tables=None,
                 check_mode=False):
    """Approve pending tasks the policy allows, oldest due first, at most ``limit`` (rows locked by
    another run are skipped and do not count). Returns ``dict(changed, approved=[...])``."""
    t = _tables(tables)
    if not approval_types:
        raise ApprovalError('auto-approval needs an explicit list of approval types')
    approval_types = check_texts('approval_types', list(approval_types))
    min_confidence = check_fraction('min_confidence', min_confidence)
    limit = check_int('limit', limit, 1, MAX_LIMIT, optional=True)
    check_text('reason', reason)
    check_text('decided_by', decided_by)
    params = dict(types=approval_types, conf=min_confidence, tenant=tenant_id, reason=reason, by=decided_by)
    where = "t.status = 'pending' AND t.approval_type = ANY(%%(types)s) AND %s >= %%(conf)s" % _CONFIDENCE
    if only_overdue:
        where += ' AND t.due_at < now()'
    if tenant_id:
        where += ' AND t.tenant_id = %(tenant)s::uuid'
    select = 'SELECT t.id FROM %s t WHERE %s ORDER BY t.due_at, t.id%s' % (
        t['tasks'], where, ' LIMIT %d' % limit if limit is not None else '')
    columns = ('t.id::text AS id, t.approval_type, t.priority, t.due_at, %s AS confidence' % _CONFIDENCE)
    # Applying: the CTE is evaluated once, so the LIMIT holds, and rows locked by another run are skipped.
    rows = _preview_or_apply(
        conn, check_mode,
        'SELECT %s FROM %s t WHERE t.id IN (%s)' % (columns, t['tasks'], select),
        ("WITH picked AS (%s FOR UPDATE SKIP LOCKED) "
         "UPDATE %s t SET status = 'approved', decision = 'approve', decision_reason = %%(reason)s, "
         "decided_at = now(), decided_by = %%(by)s, updated_at = now() "
         "FROM picked WHERE t.id = picked.id AND t.status = 'pending' RETURNING %s")
        % (select, t['tasks'], columns), params)
    return dict(changed=bool(rows), approved=rows)
