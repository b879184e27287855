# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity planning (runbook 6.1, 6.2): daily series, current load, thresholds, scale actions.

Plain Python engine of the ``capacity_info`` module and ``playbooks/capacity_report.yml``.
The three queries of 6.1 run server-side and return one row per day (bounded by
the window, never by table size).

The current load of 6.2 is judged per object, with **the alert rules' own
definitions**: each metric is a recording rule of the shipped rule files
(``CAPACITY_SERIES``), which the alerts compare with the same thresholds
(``DEFAULT_THRESHOLDS``; ``tests/integration/test_capacity_info.py`` checks
both against the rule files). So the report reads, per queue, the waiting jobs
and the latency as waiting / throughput; per PostgreSQL instance, connections
over ``max_connections``; per node_exporter host, memory and the fullest
filesystem - from Prometheus, for every host it scrapes, not the play host.
Without Prometheus, queue depth and connections can come from direct reads with
the same definitions (``measurements``, ``connection_usage``).

Rendering to Markdown and to a self-contained HTML page (inline SVG charts, no
scripts, no external assets) is done here so it can be tested.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import html

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import relation

# Runbook 6.2. Values are the thresholds as written there (percent for ratios); latency in seconds.
# The alert rules use the same numbers on the series below (as ratios: 60 % -> 0.6).
DEFAULT_THRESHOLDS = {
    'queue_depth': dict(label='Queue depth (waiting)', unit='jobs', warning=1000, critical=5000,
                        action='Add workers'),
    'processing_latency': dict(label='Processing latency', unit='s', warning=300, critical=900,
                               action='Add workers'),
    'db_connections': dict(label='Database connections', unit='%', warning=60, critical=80,
                           action='Connection pooling'),
    'memory': dict(label='Memory usage', unit='%', warning=70, critical=85, action='Add RAM'),
    'disk': dict(label='Disk usage', unit='%', warning=70, critical=85, action='Archive data'),
}

# One definition per 6.2 metric: the recording rule (roles/prometheus/files/rules) the alerts
# compare with the thresholds. ``by``: the labels naming the object; ``scale``: to the unit above;
# ``worst_of``: several series per object (filesystems of a host), the report shows the fullest.
CAPACITY_SERIES = {
    'queue_depth': dict(series='queue:bullmq_jobs_waiting:sum', by=('queue',), scale=1),
    'processing_latency': dict(series='queue:bullmq_processing_latency:seconds', by=('queue',), scale=1),
    'db_connections': dict(series='instance:pg_connections_used:ratio', by=('instance',), scale=100),
    'memory': dict(series='instance:node_memory_used:ratio', by=('instance',), scale=100),
    'disk': dict(series='instance_mountpoint:node_filesystem_used:ratio', by=('instance',), scale=100,
                 worst_of='mountpoint'),
}
# Queues with waiting jobs and no job finished in the throughput window: no latency series
# (waiting / 0); the report shows them as unbounded, critical.
STALLED_QUEUES = ('queue:bullmq_jobs_waiting:sum > 0 unless on (queue) queue:bullmq_processing_latency:seconds')
STALLED_NOTE = 'no job finished in 10 min (unbounded; see QueueStalled)'

DEFAULT_TABLES = dict(bronze_contacts='bronze_contacts', enrichment_log='silver_enrichment_log',
                      approval_tasks='approval_tasks')


class CapacityError(EngineError):
    pass


def _table(name):
    return relation('table', name, CapacityError)


def _rows(conn, sql, args):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        names = [column[0] for column in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _plain(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return round(float(value), 3)


def _clean(rows):
    return [{key: _plain(value) for key, value in row.items()} for row in rows]


def daily_series(conn, days=30, tables=None):
    """The three capacity queries of runbook 6.1 over the last ``days`` days, oldest day first."""
    tables = dict(DEFAULT_TABLES, **(tables or {}))
    interval = '%d days' % int(days)
    ingestion = _rows(conn, (
        'SELECT created_at::date AS date, count(*) AS contacts_ingested, '
        'avg(extract(epoch FROM (processed_at - created_at))) AS avg_processing_seconds '
        'FROM %s WHERE created_at > now() - %%s::interval GROUP BY 1 ORDER BY 1') % _table(tables['bronze_contacts']),
        (interval,))
    enrichment = _rows(conn, (
        'SELECT source, created_at::date AS date, count(*) AS enrichments, avg(duration_ms) AS avg_duration_ms '
        'FROM %s WHERE created_at > now() - %%s::interval GROUP BY 1, 2 ORDER BY 2, 1')
        % _table(tables['enrichment_log']), (interval,))
    hitl = _rows(conn, (
        'SELECT created_at::date AS date, count(*) AS tasks_created, '
        'count(*) FILTER (WHERE decided_at IS NOT NULL) AS tasks_resolved, '
        'avg(extract(epoch FROM (decided_at - created_at)) / 3600) FILTER (WHERE decided_at IS NOT NULL) '
        'AS avg_resolution_hours FROM %s WHERE created_at > now() - %%s::interval GROUP BY 1 ORDER BY 1')
        % _table(tables['approval_tasks']), (interval,))
    return dict(ingestion=_clean(ingestion), enrichment=_clean(enrichment), hitl=_clean(hitl))


def connection_usage(conn):
    """Connections in use against max_connections, in percent - the alert rules' definition.

    postgres_exporter's ``pg_stat_activity_count`` counts the backends attached to a
    database, and the rules divide by ``max_connections`` (not the slots left after the
    superuser reserve): the same here, so the report and ``PostgresConnections`` agree.
    """
    rows = _rows(conn, (
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname IS NOT NULL) AS used, "
        "current_setting('max_connections')::int AS max, "
        "current_setting('superuser_reserved_connections')::int AS reserved"), ())
    row = rows[0]
    return dict(used=row['used'], max=row['max'], reserved=row['reserved'],
                percent=round(100.0 * row['used'] / max(row['max'], 1), 1))


def _prometheus_vector(prometheus_url, expr, fetch_json):
    from urllib.parse import urlencode
    data = fetch_json('%s/api/v1/query?%s' % (prometheus_url.rstrip('/'), urlencode(dict(query=expr))))
    if data.get('status') != 'success':
        raise CapacityError('Prometheus query %s failed: %s' % (expr, data.get('error', data)))
    return [(sample['metric'], float(sample['value'][1])) for sample in data['data']['result']]


def prometheus_measurements(prometheus_url, fetch_json):
    """Rows per 6.2 metric from the recording rules: ``{metric: [{object, value, note}]}``.

    A metric Prometheus has no series for is left out (the caller may fill it in).
    """
    measured = {}
    for metric, spec in CAPACITY_SERIES.items():
        rows = {}
        for labels, value in _prometheus_vector(prometheus_url, spec['series'], fetch_json):
            name = ' '.join(labels.get(key, '') for key in spec['by'])
            value = value * spec['scale']
            detail = labels.get(spec['worst_of']) if spec.get('worst_of') else None
            if name not in rows or value > rows[name]['value']:
                rows[name] = dict(object=name, value=value, note=detail)
        if metric == 'processing_latency':
            for labels, _waiting in _prometheus_vector(prometheus_url, STALLED_QUEUES, fetch_json):
                rows[labels.get('queue', '')] = dict(object=labels.get('queue', ''), value=None, note=STALLED_NOTE,
                                                     unbounded=True)
        if rows:
            measured[metric] = [rows[name] for name in sorted(rows)]
    return measured


def add_missing_queues(measured, queues):
    """A row for every expected queue the measurements lack (judged unknown), so none goes unnoticed."""
    for metric, spec in CAPACITY_SERIES.items():
        if spec['by'] != ('queue',) or metric not in measured:
            continue
        known = {row['object'] for row in measured[metric]}
        missing = [dict(object=queue, value=None, note='not measured') for queue in queues if queue not in known]
        measured[metric] = sorted(measured[metric] + missing, key=lambda row: row['object'])
    return measured


def measurement_rows(value):
    """Rows from a measurement given by the caller: a number (one row) or a mapping object -> number."""
    if isinstance(value, dict):
        items = sorted(value.items())
    else:
        items = [('', value)]
    rows = []
    for name, number in items:
        if number in (None, ''):
            continue
        try:
            rows.append(dict(object=str(name), value=float(number), note=None))
        except (TypeError, ValueError):
            raise CapacityError('measurement %s must be a number, got %r' % (name or 'value', number))
    return rows


def normalize_thresholds(overrides=None):
    thresholds = {key: dict(value) for key, value in DEFAULT_THRESHOLDS.items()}
    for key, value in (overrides or {}).items():
        if key not in thresholds:
            raise CapacityError('unknown threshold %r (known: %s)' % (key, ', '.join(sorted(thresholds))))
        if not isinstance(value, dict):
            raise CapacityError('threshold %s must be a mapping with warning/critical/action' % key)
        thresholds[key].update(value)
        if float(thresholds[key]['warning']) > float(thresholds[key]['critical']):
            raise CapacityError('threshold %s: warning is above critical' % key)
    return thresholds


def _status(value, limit):
    if value > float(limit['critical']):
        return 'critical'
    if value > float(limit['warning']):
        return 'warning'
    return 'ok'


def judge(measurements, thresholds=None):
    """One verdict per measured object: ok, warning, critical or unknown, with the 6.2 scale action.

    ``measurements`` maps a metric to a number, a mapping object -> number, or rows
    ``[{object, value, note, unbounded}]`` (``unbounded``: no value because it grows without
    bound - a stalled queue's latency - judged critical; value None otherwise: unknown).
    A metric without any row gets one ``unknown`` verdict.
    """
    thresholds = normalize_thresholds(thresholds)
    verdicts = []
    for key, limit in thresholds.items():
        given = measurements.get(key)
        rows = given if isinstance(given, list) else measurement_rows(given) if given is not None else []
        base = dict(metric=key, label=limit['label'], unit=limit['unit'], warning=limit['warning'],
                    critical=limit['critical'])
        if not rows:
            verdicts.append(dict(base, object=None, value=None, status='unknown', action=None, note=None))
        for row in rows:
            if row['value'] is None:
                status, value = ('critical' if row.get('unbounded') else 'unknown'), None
            else:
                value = round(float(row['value']), 1)
                status = _status(float(row['value']), limit)
            verdicts.append(dict(base, object=row['object'] or None, value=value, status=status,
                                 action=limit['action'] if status in ('warning', 'critical') else None,
                                 note=row.get('note')))
    return verdicts


def _fmt(value, unit=''):
    if value is None:
        return 'n/a'
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if unit == 's' and isinstance(value, (int, float)):
        return '%s s (%.1f min)' % (value, value / 60.0)
    return '%s%s' % (value, ('' if unit in ('', 'jobs') else (' ' + unit if unit != '%' else ' %')))


def _where(verdict):
    where = verdict['object'] or '-'
    if verdict.get('note') and verdict['value'] is not None:
        where += ' (%s)' % verdict['note']
    return where


def _value_text(verdict):
    if verdict['value'] is None and verdict.get('note'):
        return verdict['note']
    return _fmt(verdict['value'], verdict['unit'])


def render_markdown(series, verdicts, title='CERNIQ capacity report', generated=None, sources=None):
    generated = generated or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    out = ['# %s' % title, '', 'Generated %s. Thresholds: runbook 6.2, as the alert rules apply them.' % generated,
           '']
    if sources:
        out += ['Measured from: %s.' % '; '.join(sources), '']
    out += ['## Current load', '', '| metric | where | value | warning | critical | status | scale action |',
            '|---|---|---|---|---|---|---|']
    for v in verdicts:
        out.append('| %s | %s | %s | > %s | > %s | %s | %s |' % (
            v['label'], _where(v), _value_text(v), v['warning'], v['critical'],
            v['status'].upper() if v['status'] in ('warning', 'critical') else v['status'], v['action'] or '-'))
    exceeded = [v for v in verdicts if v['status'] in ('warning', 'critical')]
    out += ['', '**Actions:** ' + ('; '.join('%s%s (%s): %s' % (
        v['label'], ' ' + v['object'] if v['object'] else '', v['status'], v['action'])
        for v in exceeded) if exceeded else 'none needed') + '.', '']
    out += ['## Daily ingestion (last %d days)' % len(series['ingestion']), '',
            '| date | contacts ingested | avg processing (s) |', '|---|---:|---:|']
    for row in series['ingestion']:
        out.append('| %s | %s | %s |' % (row['date'], row['contacts_ingested'], _fmt(row['avg_processing_seconds'])))
    out += ['', '## Enrichment throughput', '', '| date | source | enrichments | avg duration (ms) |',
            '|---|---|---:|---:|']
    for row in series['enrichment']:
        out.append('| %s | %s | %s | %s |' % (row['date'], row['source'], row['enrichments'],
                                              _fmt(row['avg_duration_ms'])))
    out += ['', '## HITL capacity', '', '| date | created | resolved | avg resolution (h) |', '|---|---:|---:|---:|']
    for row in series['hitl']:
        out.append('| %s | %s | %s | %s |' % (row['date'], row['tasks_created'], row['tasks_resolved'],
                                              _fmt(row['avg_resolution_hours'])))
    return '\n'.join(out) + '\n'


def _svg_bars(points, width=640, height=160, color='#3b6ea5'):
    """A bar chart of (label, value) as inline SVG."""
    if not points:
        return '<p class="empty">no data in the window</p>'
    top = max(value or 0 for _label, value in points) or 1
    bar_width = float(width - 40) / len(points)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img">' % (width, height + 30)]
    for i, (label, value) in enumerate(points):
        h = (float(value or 0) / top) * height
        x = 30 + i * bar_width
        parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>' % (
            x, height - h + 5, max(bar_width - 2, 1), h, color, html.escape(str(label)), html.escape(str(value))))
    parts.append('<text x="0" y="15" font-size="11">%s</text>' % html.escape(str(round(top, 1))))
    parts.append('<text x="30" y="%d" font-size="11">%s</text>' % (height + 25, html.escape(str(points[0][0]))))
    parts.append('<text x="%d" y="%d" font-size="11" text-anchor="end">%s</text>' % (
        width - 10, height + 25, html.escape(str(points[-1][0]))))
    parts.append('</svg>')
    return ''.join(parts)


def render_html(series, verdicts, title='CERNIQ capacity report', generated=None, sources=None):
    generated = generated or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    colors = dict(ok='#2e7d32', warning='#ef6c00', critical='#c62828', unknown='#757575')
    rows = ''.join(
        '<tr><td>%s</td><td>%s</td><td>%s</td><td>&gt; %s</td><td>&gt; %s</td>'
        '<td style="color:%s;font-weight:bold">%s</td><td>%s</td></tr>' % (
            html.escape(v['label']), html.escape(_where(v)), html.escape(_value_text(v)), v['warning'],
            v['critical'], colors[v['status']], v['status'], html.escape(v['action'] or '-')) for v in verdicts)
    enrichment_by_day = {}
    for row in series['enrichment']:
        enrichment_by_day[row['date']] = enrichment_by_day.get(row['date'], 0) + (row['enrichments'] or 0)
    charts = [
        ('Contacts ingested per day', [(r['date'], r['contacts_ingested']) for r in series['ingestion']]),
        ('Average processing time per day (s)', [(r['date'], r['avg_processing_seconds'])
                                                 for r in series['ingestion']]),
        ('Enrichments per day (all sources)', sorted(enrichment_by_day.items())),
        ('HITL tasks created per day', [(r['date'], r['tasks_created']) for r in series['hitl']]),
        ('HITL average resolution per day (h)', [(r['date'], r['avg_resolution_hours']) for r in series['hitl']]),
    ]
    body = ''.join('<h2>%s</h2>%s' % (html.escape(name), _svg_bars(points)) for name, points in charts)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>%s</title>'
            '<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}'
            'td,th{border:1px solid #ccc;padding:4px 8px}.empty{color:#777}</style></head><body>'
            '<h1>%s</h1><p>Generated %s. Thresholds: runbook 6.2, as the alert rules apply them.%s</p>'
            '<h2>Current load</h2>'
            '<table><tr><th>metric</th><th>where</th><th>value</th><th>warning</th><th>critical</th><th>status</th>'
            '<th>scale action</th></tr>%s</table>%s</body></html>\n') % (
        html.escape(title), html.escape(title), html.escape(generated),
        (' Measured from: %s.' % html.escape('; '.join(sources))) if sources else '', rows, body)
