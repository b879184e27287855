# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incident report (runbook 5.2) filled from live data.

Alerts and their start and end times come from Prometheus (the ``ALERTS``
series over the incident window, sampled with ``query_range``) and from
Alertmanager (``/api/v2/alerts``: what is active now, silenced or not, and
which receivers it went to; ``/api/v2/silences``: the silences in force during
the window, maintenance windows included). Impact counts come from the CERNIQ database with
one aggregate query each. The human parts of the template (root cause,
resolution, action items, lessons) are left as marked placeholders.

HTTP goes through a ``fetch_json(url)`` callable given by the caller (the
module passes one built on Ansible's ``open_url``: proxies, certificates).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.alertmanager_silence import describe as describe_silence
from ansible_collections.cerniq.ops.plugins.module_utils.durations import format_duration

PLACEHOLDER = '<!-- TODO: fill in -->'

SEVERITIES = ('SEV1', 'SEV2', 'SEV3', 'SEV4')

# Labels that never tell two alerts of one name apart in the timeline.
_NOT_DISTINGUISHING = ('alertname', 'severity', 'alertstate')

# Impact of runbook 5.2 over the incident window [start, end): what the incident touched,
# including what was already waiting or overdue when it began.
DEFAULT_IMPACT_QUERIES = {
    # Waiting when the incident ended (created before the end, not processed by then), or failed within
    # the window; a contact that failed before the window is not the incident's.
    'bronze_contacts_affected': (
        "SELECT count(*) FROM bronze_contacts WHERE created_at < %(end)s "
        "AND (processed_at IS NULL OR processed_at > %(end)s "
        "OR (processing_status = 'error' AND processed_at >= %(start)s))"),
    # Waited through (part of) the incident: existed before it ended, not enriched before it began.
    'silver_companies_delayed': (
        "SELECT count(*) FROM silver_companies WHERE created_at < %(end)s "
        "AND (enriched_at IS NULL OR enriched_at >= %(start)s)"),
    # Overdue at some moment of the window: due before its end, undecided when it began or when due.
    'approval_tasks_breached': (
        "SELECT count(*) FROM approval_tasks WHERE due_at < %(end)s "
        "AND (decided_at IS NULL OR decided_at > greatest(due_at, %(start)s))"),
}

IMPACT_LABELS = {
    'bronze_contacts_affected': 'bronze contacts affected',
    'silver_companies_delayed': 'silver companies delayed',
    'approval_tasks_breached': 'approval tasks breached SLA',
}


class IncidentError(EngineError):
    pass


def parse_time(value):
    """A timezone-aware datetime from ISO 8601 text, a datetime, or a Unix timestamp."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    text = str(value).strip()
    if text.endswith('Z'):
        text = text[:-1] + '+00:00'
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise IncidentError('cannot read %r as a time (ISO 8601 expected)' % value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _matches(labels, matchers):
    return all(labels.get(key) == value for key, value in (matchers or {}).items())


def alert_history(prometheus_url, start, end, fetch_json, step_seconds=30, matchers=None):
    """Firing periods of each alert (alertname + labels) from the ALERTS series in [start, end].

    Consecutive samples no more than two steps apart form one period.
    """
    from urllib.parse import urlencode
    query = urlencode(dict(query='ALERTS{alertstate="firing"}', start=start.timestamp(), end=end.timestamp(),
                           step='%ds' % step_seconds))
    data = fetch_json('%s/api/v1/query_range?%s' % (prometheus_url.rstrip('/'), query))
    if data.get('status') != 'success':
        raise IncidentError('Prometheus query failed: %s' % data.get('error', data))
    periods = []
    for series in data['data']['result']:
        labels = {k: v for k, v in series['metric'].items() if k not in ('__name__', 'alertstate')}
        if not _matches(labels, matchers):
            continue
        times = sorted(float(point[0]) for point in series['values'])
        first = previous = times[0]
        for stamp in times[1:] + [None]:
            if stamp is None or stamp - previous > 2 * step_seconds:
                ongoing = end.timestamp() - previous <= 2 * step_seconds
                periods.append(dict(
                    alertname=labels.get('alertname'), severity=labels.get('severity'), labels=labels,
                    start=parse_time(first).isoformat(),
                    end=None if ongoing else parse_time(previous).isoformat()))
                if stamp is not None:
                    first = stamp
            if stamp is not None:
                previous = stamp
    periods.sort(key=lambda p: (p['start'], p['alertname'] or ''))
    return periods


def active_alerts(alertmanager_url, fetch_json, matchers=None):
    """Alerts Alertmanager holds now: name, severity, state, receivers, startsAt."""
    data = fetch_json('%s/api/v2/alerts' % alertmanager_url.rstrip('/'))
    alerts = []
    for alert in data:
        labels = alert.get('labels', {})
        if not _matches(labels, matchers):
            continue
        alerts.append(dict(alertname=labels.get('alertname'), severity=labels.get('severity'), labels=labels,
                           state=(alert.get('status') or {}).get('state'),
                           receivers=[r.get('name') for r in alert.get('receivers', [])],
                           starts_at=alert.get('startsAt'), summary=(alert.get('annotations') or {}).get('summary')))
    alerts.sort(key=lambda a: (a['starts_at'] or '', a['alertname'] or ''))
    return alerts


def window_silences(alertmanager_url, fetch_json, start, end):
    """Silences in force at some moment of [start, end] (any state now), earliest first."""
    data = fetch_json('%s/api/v2/silences' % alertmanager_url.rstrip('/'))
    found = [describe_silence(s) for s in data
             if parse_time(s.get('startsAt')) < end and parse_time(s.get('endsAt')) > start]
    found.sort(key=lambda s: (s['starts_at'] or '', s['id'] or ''))
    return found


def impact_counts(conn, start, end, queries=None):
    """One count per impact query over [start, end); a failing query is reported, not fatal."""
    queries = dict(DEFAULT_IMPACT_QUERIES, **(queries or {}))
    counts, errors = {}, {}
    for name, sql in queries.items():
        with conn.cursor() as cur:
            try:
                cur.execute('BEGIN READ ONLY')
                cur.execute(sql, dict(start=start, end=end))
                counts[name] = cur.fetchone()[0]
            except Exception as error:  # pylint: disable=broad-except
                counts[name] = None
                errors[name] = str(error).strip().splitlines()[0]
            finally:
                cur.execute('ROLLBACK')
    return counts, errors


def derive_severity(periods, active):
    """The most severe sevN label among the incident's alerts (SEV1 is most severe)."""
    found = [str(item.get('severity') or '').upper() for item in list(periods) + list(active)]
    for severity in SEVERITIES:
        if severity in found:
            return severity
    return None


def incident_status(periods, active, end, resolved_after_seconds=900, mitigated_at=None):
    """``(status, resolved_at)`` of the incident as of ``end`` (runbook 5.2's Active/Mitigated/Resolved).

    - Resolved: no alert of the incident fires (no open period, nothing active in Alertmanager) and the
      last one cleared at least ``resolved_after_seconds`` before ``end`` - it stayed clear.
      ``resolved_at`` is that last clear.
    - Mitigated: a fix is known - ``mitigated_at`` given, or an alert of the incident already cleared -
      but an alert still fires, or the last one cleared too recently to call it resolved.
    - Active: nothing cleared and no fix recorded.
    """
    firing = [p for p in periods if not p['end']] + list(active)
    cleared = [parse_time(p['end']) for p in periods if p['end']]
    last_clear = max(cleared) if cleared else None
    if not firing and last_clear is not None and (end - last_clear).total_seconds() >= resolved_after_seconds:
        return 'Resolved', last_clear
    if not firing and not periods:
        return 'Resolved', None
    if mitigated_at is not None or cleared:
        return 'Mitigated', None
    return 'Active', None


def _label_sets(items):
    return [dict((k, v) for k, v in item['labels'].items() if k not in _NOT_DISTINGUISHING) for item in items]


def distinguishing_labels(items):
    """``{alertname: [label keys]}``: the labels whose values differ among the alerts of one name (what tells
    repeated alerts apart in the timeline)."""
    keys = {}
    for name in set(item['alertname'] for item in items):
        sets = _label_sets([item for item in items if item['alertname'] == name])
        keys[name] = sorted(k for k in set().union(*sets) if len(set(s.get(k) for s in sets)) > 1)
    return keys


def _alert_text(item, keys):
    shown = ['%s="%s"' % (k, item['labels'].get(k, '')) for k in keys.get(item['alertname'], [])]
    return '%s%s' % (item['alertname'], ' {%s}' % ', '.join(shown) if shown else '')


def _duration(start, end):
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return '%dh %02dm' % (hours, rest // 60)


def _utc(value):
    return parse_time(value).strftime('%Y-%m-%d %H:%M UTC')


def render_markdown(incident_id, start, end, periods, active, counts, errors, severity=None, services=None,
                    silences=(), status=None, resolved_at=None, resolved_after_seconds=900, mitigated_at=None,
                    mitigated_by=None):
    """The 5.2 template filled in: summary, timeline from alerts, impact; human parts as placeholders."""
    if status is None:
        status, resolved_at = incident_status(periods, active, end, resolved_after_seconds, mitigated_at)
    severity = severity or derive_severity(periods, active) or 'SEV? %s' % PLACEHOLDER
    services = services or sorted({p['labels'].get('service') or p['labels'].get('job') or p['alertname']
                                   for p in list(periods) + list(active)} - {None})
    closed = resolved_at or (end if status == 'Resolved' else None)
    end_text = _utc(closed) if closed else 'ongoing (report made %s)' % end.strftime('%Y-%m-%d %H:%M UTC')
    out = ['# Incident Report: %s' % incident_id, '', '## Summary',
           '- **Severity:** %s' % severity,
           '- **Status:** %s' % status,
           '- **Start Time:** %s' % start.strftime('%Y-%m-%d %H:%M UTC'),
           '- **End Time:** %s' % end_text,
           '- **Duration:** %s' % _duration(start, closed or end),
           '- **Affected Services:** %s' % (', '.join(s for s in services if s) or PLACEHOLDER),
           '', '## Timeline', '| Time | Event | Actor |', '|------|-------|-------|']
    keys = distinguishing_labels(list(periods) + list(active))
    events = []
    for p in periods:
        events.append((p['start'], 'Alert %s (%s) fired' % (_alert_text(p, keys), p['severity'] or 'no severity'),
                       'System'))
        if p['end']:
            events.append((p['end'], 'Alert %s cleared' % _alert_text(p, keys), 'System'))
    for a in active:
        if not any(_alert_text(p, keys) == _alert_text(a, keys) for p in periods) and a['starts_at']:
            events.append((parse_time(a['starts_at']).isoformat(), 'Alert %s (%s) active in Alertmanager, routed to %s'
                           % (_alert_text(a, keys), a['severity'] or 'no severity', ', '.join(a['receivers']) or '-'),
                           'System'))
    for silence in silences:
        what = '%s (%s)' % (', '.join(silence['matchers']), silence['comment'])
        events.append((silence['starts_at'], 'Silence %s' % what, silence['created_by'] or '-'))
        if parse_time(silence['ends_at']) <= end:
            events.append((silence['ends_at'], 'Silence ended: %s' % silence['comment'], silence['created_by'] or '-'))
    if mitigated_at is not None:
        events.append((mitigated_at.isoformat(), 'Fix deployed', mitigated_by or PLACEHOLDER))
    if status == 'Resolved' and resolved_at is not None:
        events.append((resolved_at.isoformat(), 'Incident resolved (every alert cleared and stayed clear for %s)'
                       % format_duration(resolved_after_seconds), 'System'))
    for stamp, event, actor in sorted(events, key=lambda e: (parse_time(e[0]), e[1])):
        out.append('| %s | %s | %s |' % (parse_time(stamp).strftime('%Y-%m-%d %H:%M'), event, actor))
    out += ['| %s | On-call acknowledged | %s |' % (PLACEHOLDER, PLACEHOLDER),
            '| %s | Root cause identified | %s |' % (PLACEHOLDER, PLACEHOLDER)]
    if mitigated_at is None:
        out.append('| %s | Fix deployed | %s |' % (PLACEHOLDER, PLACEHOLDER))
    if status != 'Resolved' or resolved_at is None:
        out.append('| %s | Incident resolved | %s |' % (PLACEHOLDER, PLACEHOLDER))
    out += ['', '## Root Cause', PLACEHOLDER, '', '## Impact']
    for name, label in IMPACT_LABELS.items():
        value = counts.get(name)
        out.append('- %s %s' % (value if value is not None else 'unknown (%s)' % errors.get(name, 'not measured'),
                                label))
    for name in sorted(set(counts) - set(IMPACT_LABELS)):
        out.append('- %s %s' % (counts[name], name.replace('_', ' ')))
    out += ['', '## Resolution', PLACEHOLDER, '', '## Action Items', '- [ ] %s' % PLACEHOLDER, '',
            '## Lessons Learned', PLACEHOLDER, '']
    return '\n'.join(out)
