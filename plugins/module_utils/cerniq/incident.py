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

PLACEHOLDER = '<!-- TODO: fill in -->'

SEVERITIES = ('SEV1', 'SEV2', 'SEV3', 'SEV4')

# Impact of runbook 5.2 over the incident window [start, end): what the incident touched,
# including what was already waiting or overdue when it began.
DEFAULT_IMPACT_QUERIES = {
    # Not processed when the incident ended (or failed): created before the end, whenever that was.
    'bronze_contacts_affected': (
        "SELECT count(*) FROM bronze_contacts WHERE created_at < %(end)s "
        "AND (processed_at IS NULL OR processed_at > %(end)s OR processing_status = 'error')"),
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


def _duration(start, end):
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return '%dh %02dm' % (hours, rest // 60)


def render_markdown(incident_id, start, end, periods, active, counts, errors, severity=None, services=None,
                    resolved=None, silences=()):
    """The 5.2 template filled in: summary, timeline from alerts, impact; human parts as placeholders."""
    severity = severity or derive_severity(periods, active) or 'SEV? %s' % PLACEHOLDER
    if resolved is None:
        resolved = not active and all(p['end'] for p in periods)
    status = 'Resolved' if resolved else 'Active'
    services = services or sorted({p['labels'].get('job') or p['labels'].get('service') or p['alertname']
                                   for p in periods} | {a['labels'].get('job') or a['alertname'] for a in active})
    end_text = end.strftime('%Y-%m-%d %H:%M UTC') if resolved else 'ongoing (report made %s)' % (
        end.strftime('%Y-%m-%d %H:%M UTC'))
    out = ['# Incident Report: %s' % incident_id, '', '## Summary',
           '- **Severity:** %s' % severity,
           '- **Status:** %s' % status,
           '- **Start Time:** %s' % start.strftime('%Y-%m-%d %H:%M UTC'),
           '- **End Time:** %s' % end_text,
           '- **Duration:** %s' % _duration(start, end),
           '- **Affected Services:** %s' % (', '.join(s for s in services if s) or PLACEHOLDER),
           '', '## Timeline', '| Time | Event | Actor |', '|------|-------|-------|']
    events = []
    for p in periods:
        events.append((p['start'], 'Alert %s (%s) fired' % (p['alertname'], p['severity'] or 'no severity'),
                       'System'))
        if p['end']:
            events.append((p['end'], 'Alert %s cleared' % p['alertname'], 'System'))
    for a in active:
        if not any(p['alertname'] == a['alertname'] for p in periods) and a['starts_at']:
            events.append((parse_time(a['starts_at']).isoformat(), 'Alert %s (%s) active in Alertmanager, routed to %s'
                           % (a['alertname'], a['severity'] or 'no severity', ', '.join(a['receivers']) or '-'),
                           'System'))
    for silence in silences:
        what = '%s (%s)' % (', '.join(silence['matchers']), silence['comment'])
        events.append((silence['starts_at'], 'Silence %s' % what, silence['created_by'] or '-'))
        if parse_time(silence['ends_at']) <= end:
            events.append((silence['ends_at'], 'Silence ended: %s' % silence['comment'], silence['created_by'] or '-'))
    for stamp, event, actor in sorted(events):
        out.append('| %s | %s | %s |' % (parse_time(stamp).strftime('%Y-%m-%d %H:%M'), event, actor))
    out += ['| %s | On-call acknowledged | %s |' % (PLACEHOLDER, PLACEHOLDER),
            '| %s | Root cause identified | %s |' % (PLACEHOLDER, PLACEHOLDER),
            '| %s | Fix deployed | %s |' % (PLACEHOLDER, PLACEHOLDER),
            '', '## Root Cause', PLACEHOLDER, '', '## Impact']
    for name, label in IMPACT_LABELS.items():
        value = counts.get(name)
        out.append('- %s %s' % (value if value is not None else 'unknown (%s)' % errors.get(name, 'not measured'),
                                label))
    for name in sorted(set(counts) - set(IMPACT_LABELS)):
        out.append('- %s %s' % (counts[name], name.replace('_', ' ')))
    out += ['', '## Resolution', PLACEHOLDER, '', '## Action Items', '- [ ] %s' % PLACEHOLDER, '',
            '## Lessons Learned', PLACEHOLDER, '']
    return '\n'.join(out)
