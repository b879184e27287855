# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``bullmq_queue_stats`` snapshot of runbook 2.4, filled from a queue read.

Runbook 2.4 checks the scoring workers with
``SELECT queue_name, waiting, active, completed, failed FROM bullmq_queue_stats``.
The table holds one row per queue: the counts of the last read
(``bullmq_queue_info``'s ``queues``) and ``updated_at``, the time of that read,
so whoever runs the SQL sees how old the numbers are.

``waiting`` is the alert rules' queue depth (wait + prioritized + paused: every
job not started yet); ``paused`` the part of it held by a paused queue (BullMQ 5
keeps those jobs in the ``paused`` list). The rows of all queues are written in
one statement, in one transaction; queues absent from the read are left alone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import quote_relation

COLUMNS = ('waiting', 'active', 'delayed', 'completed', 'failed', 'paused')


class QueueStatsError(EngineError):
    """Bad input, or a table without the expected columns: nothing was written."""


def stats_rows(queues):
    """``{queue: {waiting, active, delayed, completed, failed, paused}}`` from bullmq_queue_info's ``queues``.

    Missing queues (``exists: false``) are skipped: no row claims zero jobs for a queue nobody read.
    """
    if not isinstance(queues, dict):
        raise QueueStatsError('queues must be the mapping returned by bullmq_queue_info (queue name -> state)')
    rows = {}
    for name, queue in queues.items():
        if not isinstance(queue, dict) or not queue.get('exists', True) or 'counts' not in queue:
            continue
        counts = queue['counts'] if isinstance(queue['counts'], dict) else {}
        try:
            n = {state: int(counts.get(state) or 0) for state in
                 ('wait', 'prioritized', 'paused', 'active', 'delayed', 'completed', 'failed')}
        except (TypeError, ValueError):
            n = {'wait': -1}
        if min(n.values()) < 0:
            raise QueueStatsError('queue %s: counts must be non-negative integers, got %r' % (name, queue['counts']))
        rows[str(name)] = dict(waiting=n['wait'] + n['prioritized'] + n['paused'], active=n['active'],
                               delayed=n['delayed'], completed=n['completed'], failed=n['failed'],
                               paused=n['paused'])
    return rows


def record_queue_stats(conn, queues, table='bullmq_queue_stats', check_mode=False):
    """Upsert the rows; returns ``(changed_queues, rows)``.

    ``changed_queues``: queues whose counts differ from the stored row (or had none).
    ``updated_at`` is refreshed for every queue read, changed or not. Check mode writes nothing.
    """
    rows = stats_rows(queues)
    try:
        relation = quote_relation(table)
    except ValueError as error:
        raise QueueStatsError(str(error))
    with conn.cursor() as cur:
        cur.execute('SELECT to_regclass(%s)', (relation,))
        if cur.fetchone()[0] is None:
            raise QueueStatsError('table %s does not exist (schema migration 002_queue_stats.sql)' % table)
        cur.execute('SELECT queue_name, %s FROM %s WHERE queue_name = ANY(%%s)' % (', '.join(COLUMNS), relation),
                    (sorted(rows),))
        stored = {row[0]: dict(zip(COLUMNS, row[1:])) for row in cur.fetchall()}
        changed = sorted(name for name, counts in rows.items() if stored.get(name) != counts)
        if rows and not check_mode:
            values = ', '.join(['(%s, %s, %s, %s, %s, %s, %s, now())'] * len(rows))
            args = []
            for name in sorted(rows):
                args += [name] + [rows[name][column] for column in COLUMNS]
            cur.execute(
                'INSERT INTO %s AS s (queue_name, %s, updated_at) VALUES %s '
                'ON CONFLICT (queue_name) DO UPDATE SET %s, updated_at = EXCLUDED.updated_at' % (
                    relation, ', '.join(COLUMNS), values,
                    ', '.join('%s = EXCLUDED.%s' % (column, column) for column in COLUMNS)), args)
    if not check_mode:
        conn.commit()
    return changed, rows
