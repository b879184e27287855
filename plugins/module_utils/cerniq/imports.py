# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Imports stuck in ``processing`` (runbook 2.1): find them, cancel them safely (plain Python).

A batch is stuck when it is ``processing``, started more than ``stuck_after`` (a duration
with a unit) ago, its row has not been updated (no progress) for as long, and no contact of it
was created for as long. ``cancel`` re-checks all of that inside the ``UPDATE``'s
``WHERE``, so a batch that made progress between the diagnosis and the update is
left alone (reported in ``no_longer_stuck``); a cancelled batch is no longer ``processing``,
so a rerun changes nothing. ``check_options`` checks the module's options before it connects.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    MAX_SECONDS, CerniqError, check_duration, check_relation, check_text, check_uuid, check_uuids)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import transaction

DEFAULT_REASON = 'Manually cancelled - stuck processing'
DEFAULT_STUCK_AFTER = '30m'

# The options the import_batch and import_batch_info modules share (documented once in the
# cerniq.ops.import_batches doc fragment).
IMPORTS_ARGUMENT_SPEC = dict(
    ids=dict(type='list', elements='str'),
    tenant_id=dict(type='str'),
    stuck_after=dict(type='str', default=DEFAULT_STUCK_AFTER),
    batches_table=dict(type='str', default='bronze_import_batches'),
    contacts_table=dict(type='str', default='bronze_contacts'),
)


class ImportBatchError(CerniqError):
    """Bad input (ids, thresholds, table names)."""


def tables(table='bronze_import_batches', contacts_table='bronze_contacts'):
    """``{option: quoted table}`` of the tables the procedures read and write (for ``require_tables``)."""
    return dict(batches_table=check_relation('batches_table', table),
                contacts_table=check_relation('contacts_table', contacts_table))


def check_options(p):
    """Check the options of import_batch or import_batch_info (no ``reason``) before connecting; raises
    ``CerniqError`` naming the option."""
    tables(p['batches_table'], p['contacts_table'])
    _params(p['stuck_after'], p['ids'], p['tenant_id'])
    if 'reason' in p:
        check_text('reason', p['reason'])


def _where(ids, tenant_id):
    where = """b.status = 'processing'
  AND coalesce(b.started_at, b.created_at) < now() - %(seconds)s * interval '1 second'
  AND b.updated_at < now() - %(seconds)s * interval '1 second'
  AND NOT EXISTS (SELECT 1 FROM {contacts} c
                  WHERE c.import_batch_id = b.id AND c.created_at > now() - %(seconds)s * interval '1 second')"""
    if ids is not None:
        where += '\n  AND b.id = ANY(%(ids)s::uuid[])'
    if tenant_id:
        where += '\n  AND b.tenant_id = %(tenant_id)s::uuid'
    return where


_COLUMNS = """b.id::text, b.tenant_id::text, b.status, b.progress_percent::float8, b.total_rows, b.processed_rows,
       b.error_message, b.started_at, b.updated_at,
       (extract(epoch FROM now() - greatest(b.started_at, b.created_at, b.updated_at)) / 60)::float8,
       b.queue_name, b.job_ids"""
_KEYS = ('id', 'tenant_id', 'status', 'progress_percent', 'total_rows', 'processed_rows', 'error_message',
         'started_at', 'updated_at', 'stalled_minutes', 'queue_name', 'job_ids')


def _row(row):
    item = dict(zip(_KEYS, row))
    for key in ('started_at', 'updated_at'):
        item[key] = item[key].isoformat() if item[key] is not None else None
    item['stalled_minutes'] = round(item['stalled_minutes'], 1)
    item['job_ids'] = list(item['job_ids'] or [])
    return item


def _params(stuck_after, ids, tenant_id):
    return dict(seconds=check_duration('stuck_after', stuck_after, 60, MAX_SECONDS),
                ids=check_uuids('ids', ids, optional=True), tenant_id=check_uuid('tenant_id', tenant_id, optional=True))


def find_stuck(conn, stuck_after=DEFAULT_STUCK_AFTER, ids=None, tenant_id=None,
               table='bronze_import_batches', contacts_table='bronze_contacts'):
    """The stuck batches, oldest first, as dicts (id, progress, rows, stalled_minutes, queue_name, job_ids ...)."""
    params = _params(stuck_after, ids, tenant_id)
    t = tables(table, contacts_table)
    sql = 'SELECT %s\nFROM %s b\nWHERE %s\nORDER BY coalesce(b.started_at, b.created_at), b.id' % (
        _COLUMNS, t['batches_table'], _where(params['ids'], tenant_id).format(contacts=t['contacts_table']))
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = [_row(row) for row in cur.fetchall()]
    if not conn.autocommit:
        conn.rollback()
    return rows


def queues_of(batches):
    """``[{'name': queue, 'job_ids': [...]}]`` for the batches, one entry per queue, in name order."""
    queues = {}
    for batch in batches:
        if batch.get('queue_name'):
            queues.setdefault(batch['queue_name'], [])
            queues[batch['queue_name']].extend(j for j in batch['job_ids'] if j not in queues[batch['queue_name']])
    return [dict(name=name, job_ids=queues[name]) for name in sorted(queues)]


def cancel(conn, reason=DEFAULT_REASON, stuck_after=DEFAULT_STUCK_AFTER, ids=None, tenant_id=None,
           table='bronze_import_batches', contacts_table='bronze_contacts', check_mode=False):
    """Cancel the stuck batches (``status='cancelled'``, ``error_message=reason``, ``cancelled_at=now()``).

    Returns ``dict(changed, stuck=[found before], cancelled=[updated], no_longer_stuck=[ids found stuck but
    not at the update], queues=[{name, job_ids}] of the cancelled batches)``.
    """
    check_text('reason', reason)
    stuck = find_stuck(conn, stuck_after, ids, tenant_id, table, contacts_table)
    if check_mode or not stuck:
        return dict(changed=bool(stuck), stuck=stuck, cancelled=stuck if check_mode else [], no_longer_stuck=[],
                    queues=queues_of(stuck))
    params = _params(stuck_after, [b['id'] for b in stuck], tenant_id)
    params['reason'] = reason
    t = tables(table, contacts_table)
    sql = ("UPDATE %s AS b SET status = 'cancelled', error_message = %%(reason)s, cancelled_at = now(), "
           "updated_at = now()\nWHERE %s\nRETURNING %s") % (
        t['batches_table'], _where(params['ids'], tenant_id).format(contacts=t['contacts_table']), _COLUMNS)
    with transaction(conn), conn.cursor() as cur:
        cur.execute(sql, params)
        cancelled = sorted((_row(row) for row in cur.fetchall()), key=lambda b: b['started_at'] or '')
    done = set(b['id'] for b in cancelled)
    return dict(changed=bool(cancelled), stuck=stuck, cancelled=cancelled,
                no_longer_stuck=[b['id'] for b in stuck if b['id'] not in done], queues=queues_of(cancelled))
