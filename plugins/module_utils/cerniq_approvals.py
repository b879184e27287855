# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HITL SLA breach procedures (runbook 2.3) on ``approval_tasks`` (plain Python).

- ``report``: overdue pending tasks and the workload of each operator.
- ``release``: tasks assigned to overloaded operators and due within a window go back
  to the unassigned pending pool.
- ``escalate``: each breached task not yet escalated since it breached is escalated
  through the HITL API (``POST <api>/api/v1/approvals/<id>/escalate``); the row is
  locked (``FOR UPDATE SKIP LOCKED``) during the call and the escalation is recorded
  (``escalation_level + 1``, ``escalated_at``, a row in ``approval_task_escalations``)
  in the same transaction, so neither a rerun nor a concurrent run escalates twice.
- ``auto_approve``: pending tasks of the policy's approval types with a confidence at
  least ``min_confidence`` (and overdue, by default) are approved with a recorded
  reason and ``decided_by``.

HTTP goes through a ``post(url, payload) -> (status, body)`` callable supplied by the
caller (the module passes one built on Ansible's ``open_url``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import quote_relation

DEFAULT_TABLES = dict(tasks='approval_tasks', users='users', escalations='approval_task_escalations')
DEFAULT_ESCALATION_REASON = 'SLA breach - manual escalation'
DEFAULT_APPROVE_REASON = 'Auto-approved due to SLA breach'
DEFAULT_DECIDED_BY = 'cerniq.ops auto-approve'
ESCALATE_PATH = '/api/v1/approvals/{id}/escalate'

# metadata->>'confidence' as a number, NULL when absent or not numeric (never a cast error)
_CONFIDENCE = ("(CASE WHEN t.metadata->>'confidence' ~ '^\\s*[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?\\s*$' "
               "THEN (t.metadata->>'confidence')::float8 END)")


class ApprovalError(Exception):
    """Bad input: unknown users, bad policy, bad table names."""


def _tables(tables):
    merged = dict(DEFAULT_TABLES)
    merged.update(dict((k, v) for k, v in (tables or {}).items() if v))
    quoted = {}
    for key, name in merged.items():
        try:
            quoted[key] = quote_relation(name)
        except ValueError as error:
            raise ApprovalError(str(error))
    return quoted


def _iso(value):
    return value.isoformat() if value is not None else None


def _fetch(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params or {})
        names = [col[0] for col in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    for row in rows:
        for key, value in row.items():
            if hasattr(value, 'isoformat'):
                row[key] = value.isoformat()
            elif value.__class__.__name__ == 'Decimal':
                row[key] = float(value)
    return rows


def _end_read(conn):
    if not conn.autocommit:
        conn.rollback()


def breached_tasks(conn, tenant_id=None, tables=None):
    t = _tables(tables)
    sql = ("SELECT t.id::text AS id, t.approval_type, t.priority, t.due_at, t.assigned_to::text AS assigned_to, "
           "u.name AS assigned_to_name, t.escalation_level, t.escalated_at, "
           "round((extract(epoch FROM now() - t.due_at) / 60)::numeric, 1) AS overdue_minutes, "
           "%s AS confidence "
           "FROM %s t LEFT JOIN %s u ON u.id = t.assigned_to "
           "WHERE t.status = 'pending' AND t.due_at < now() %s ORDER BY t.due_at, t.id") % (
        _CONFIDENCE, t['tasks'], t['users'], 'AND t.tenant_id = %(tenant)s::uuid' if tenant_id else '')
    return _fetch(conn, sql, dict(tenant=tenant_id))


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
    return _fetch(conn, sql, dict(tenant=tenant_id))


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
    rows = _fetch(conn, 'SELECT id::text AS id, lower(email) AS email FROM %s WHERE id = ANY(%%(ids)s::uuid[]) '
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


def _write(conn, body):
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        result = body()
        conn.commit()
        return result
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = autocommit


def release(conn, operators=None, max_tasks_per_operator=10, window_minutes=120, tenant_id=None, tables=None,
            check_mode=False):
    """Unassign the ``assigned`` tasks of ``operators`` (ids or e-mails; default: the overloaded ones)
    due within ``window_minutes``. Returns ``dict(changed, operators=[ids], released=[tasks])``."""
    t = _tables(tables)
    if operators:
        user_ids = resolve_users(conn, operators, tables)
    else:
        user_ids = [w['user_id'] for w in report(conn, max_tasks_per_operator, tenant_id, tables)['overloaded']]
    if not user_ids:
        return dict(changed=False, operators=[], released=[])
    params = dict(users=user_ids, minutes=int(window_minutes), tenant=tenant_id)
    where = ("t.status = 'assigned' AND t.assigned_to = ANY(%%(users)s::uuid[]) "
             "AND t.due_at < now() + %%(minutes)s * interval '1 minute' %s") % (
        'AND t.tenant_id = %(tenant)s::uuid' if tenant_id else '')
    columns = 't.id::text AS id, t.approval_type, t.priority, t.due_at'
    if check_mode:
        rows = _fetch(conn, 'SELECT %s, t.assigned_to::text AS previous_assignee FROM %s t WHERE %s ORDER BY t.due_at'
                      % (columns, t['tasks'], where), params)
        _end_read(conn)
    else:
        rows = _write(conn, lambda: _fetch(conn, (
            "UPDATE %s t SET assigned_to = NULL, status = 'pending', updated_at = now() "
            "FROM %s old WHERE old.id = t.id AND %s RETURNING %s, old.assigned_to::text AS previous_assignee")
            % (t['tasks'], t['tasks'], where, columns), params))
        rows.sort(key=lambda r: (r['due_at'], r['id']))
    return dict(changed=bool(rows), operators=user_ids, released=rows)


def _escalation_candidates(conn, t, tenant_id, task_ids, limit, lock_id=None):
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
    elif limit:
        sql += ' LIMIT %d' % int(limit)
    return _fetch(conn, sql, dict(tenant=tenant_id, ids=task_ids, lock=lock_id))


def _check_ids(ids):
    if ids is None:
        return None
    try:
        return [str(uuid.UUID(str(i))) for i in ids]
    except ValueError:
        raise ApprovalError('invalid task id in %s: expected UUIDs' % (list(ids),))


def escalate(conn, post, api_url, reason=DEFAULT_ESCALATION_REASON, escalate_to=None, escalated_by='cerniq.ops',
             task_ids=None, max_tasks=None, tenant_id=None, tables=None, check_mode=False, fallback_to=None):
    """Escalate breached tasks not escalated since they breached.

    ``escalate_to``: a user id or e-mail for every task; by default the assignee's manager, else
    ``fallback_to`` (tasks with neither are skipped). Returns ``dict(changed, escalated=[...], skipped=[...], failed=[...])``.
    """
    t = _tables(tables)
    if not api_url:
        raise ApprovalError('api_url is required to escalate')
    if not reason or not reason.strip():
        raise ApprovalError('an escalation reason is required')
    task_ids = _check_ids(task_ids)
    target = resolve_users(conn, [escalate_to], tables)[0] if escalate_to else None
    fallback = resolve_users(conn, [fallback_to], tables)[0] if fallback_to else None
    candidates = _escalation_candidates(conn, t, tenant_id, task_ids, max_tasks)
    _end_read(conn)
    escalated, skipped, failed = [], [], []
    for task in candidates:
        to = target or task['manager_id'] or fallback
        if not to:
            skipped.append(dict(id=task['id'], reason='no escalation target: unassigned or assignee has no manager'))
            continue
        entry = dict(id=task['id'], escalate_to=to, level=task['escalation_level'] + 1, due_at=task['due_at'])
        if check_mode:
            escalated.append(entry)
            continue
        outcome = _escalate_one(conn, t, post, api_url, task['id'], to, reason, escalated_by, tenant_id)
        if outcome is None:
            skipped.append(dict(id=task['id'], reason='escalated or changed by someone else meanwhile'))
        elif outcome.get('error'):
            failed.append(dict(entry, **outcome))
        else:
            escalated.append(dict(entry, **outcome))
    return dict(changed=bool(escalated), escalated=escalated, skipped=skipped, failed=failed)


def _escalate_one(conn, t, post, api_url, task_id, to, reason, escalated_by, tenant_id):
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        locked = _escalation_candidates(conn, t, tenant_id, None, None, lock_id=task_id)
        if not locked:
            conn.rollback()
            return None
        url = api_url.rstrip('/') + ESCALATE_PATH.format(id=task_id)
        try:
            status, body = post(url, dict(escalateTo=to, reason=reason))
        except Exception as error:  # network errors: keep the task as it was
            conn.rollback()
            return dict(error='request failed: %s' % (str(error).splitlines() or [error.__class__.__name__])[0])
        if not 200 <= int(status) < 300:
            conn.rollback()
            return dict(error='HITL API answered HTTP %s: %s' % (status, (body or '')[:200]), api_status=status)
        with conn.cursor() as cur:
            cur.execute("UPDATE %s SET escalation_level = escalation_level + 1, escalated_at = now(), "
                        "escalated_to = %%(to)s::uuid, updated_at = now() WHERE id = %%(id)s::uuid "
                        "RETURNING escalation_level" % t['tasks'], dict(id=task_id, to=to))
            level = cur.fetchone()[0]
            cur.execute("INSERT INTO %s (task_id, level, escalated_to, reason, escalated_by, api_status) "
                        "VALUES (%%s, %%s, %%s, %%s, %%s, %%s)" % t['escalations'],
                        (task_id, level, to, reason, escalated_by, int(status)))
        conn.commit()
        return dict(level=level, api_status=int(status))
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = autocommit


def auto_approve(conn, approval_types, min_confidence=0.90, only_overdue=True, max_count=None,
                 reason=DEFAULT_APPROVE_REASON, decided_by=DEFAULT_DECIDED_BY, tenant_id=None, tables=None,
                 check_mode=False):
    """Approve pending tasks the policy allows. Returns ``dict(changed, approved=[...])``."""
    t = _tables(tables)
    if not approval_types:
        raise ApprovalError('auto-approval needs an explicit list of approval types')
    if not 0 < float(min_confidence) <= 1:
        raise ApprovalError('min_confidence must be in (0, 1]')
    if max_count is not None and int(max_count) < 1:
        raise ApprovalError('max_count must be at least 1')
    if not reason or not reason.strip():
        raise ApprovalError('a decision reason is required')
    params = dict(types=list(approval_types), conf=float(min_confidence), tenant=tenant_id, reason=reason,
                  by=decided_by)
    where = "t.status = 'pending' AND t.approval_type = ANY(%%(types)s) AND %s >= %%(conf)s" % _CONFIDENCE
    if only_overdue:
        where += ' AND t.due_at < now()'
    if tenant_id:
        where += ' AND t.tenant_id = %(tenant)s::uuid'
    select = 'SELECT t.id FROM %s t WHERE %s ORDER BY t.due_at, t.id%s' % (
        t['tasks'], where, ' LIMIT %d' % int(max_count) if max_count else '')
    columns = ('t.id::text AS id, t.approval_type, t.priority, t.due_at, %s AS confidence' % _CONFIDENCE)
    if check_mode:
        rows = _fetch(conn, 'SELECT %s FROM %s t WHERE t.id IN (%s) ORDER BY t.due_at, t.id'
                      % (columns, t['tasks'], select), params)
        _end_read(conn)
    else:
        # the CTE is evaluated once: the LIMIT holds, and rows locked by another run are skipped
        rows = _write(conn, lambda: _fetch(conn, (
            "WITH picked AS (%s FOR UPDATE SKIP LOCKED) "
            "UPDATE %s t SET status = 'approved', decision = 'approve', decision_reason = %%(reason)s, "
            "decided_at = now(), decided_by = %%(by)s, updated_at = now() "
            "FROM picked WHERE t.id = picked.id AND t.status = 'pending' RETURNING %s")
            % (select, t['tasks'], columns), params))
        rows.sort(key=lambda r: (r['due_at'], r['id']))
    return dict(changed=bool(rows), approved=rows)
