#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: incident_info
short_description: Fill the runbook 5.2 incident report from Prometheus, Alertmanager and the CERNIQ database
description:
  - Reads the firing periods of alerts over the incident window from Prometheus (the C(ALERTS) series), the alerts
    Alertmanager holds now (state and receivers), the silences in force during the window (maintenance windows of
    the collection's playbooks included; they go into the timeline), and impact counts from the database - bronze
    contacts affected, silver companies delayed, approval tasks that breached their SLA.
  - Returns the data and the incident report of runbook 5.2 as Markdown, with the human parts (root cause,
    resolution, action items, lessons learned) left as marked placeholders.
  - When O(start) is not given, the incident starts at the first firing alert within O(lookback).
  - The status follows what happened - V(Resolved) when no alert of the incident fires any more and the last one
    cleared at least O(resolved_after) before O(end) (it stayed clear; the end time is that last clear and the
    timeline gets an C(Incident resolved) row); V(Mitigated) when a fix is known (O(mitigated_at), or one of the
    incident's alerts already cleared) but an alert still fires or the last one cleared too recently;
    V(Active) otherwise. Alerts Alertmanager holds now count as firing only when O(end) is not given.
  - In the timeline, alerts of the same name are told apart by the labels whose values differ among them (for
    example C(HITLTasksOverdue {tenant_id="..."})).
version_added: 0.1.0
author:
  - cerniq.ops contributors (@cerniq-ops)
extends_documentation_fragment:
  - cerniq.ops.postgres
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to compare.
options:
  incident_id:
    description: Identifier in the report title; default C(INC-<start as YYYYMMDD-HHMM>).
    type: str
  prometheus_url:
    description: Base URL of Prometheus, for example C(http://127.0.0.1:9090).
    type: str
    required: true
  alertmanager_url:
    description: Base URL of Alertmanager, for example C(http://127.0.0.1:9093). Omit to skip active alerts.
    type: str
  start:
    description: Start of the incident window (ISO 8601). Default - the first firing alert within O(lookback).
    type: str
  end:
    description: End of the incident window (ISO 8601). Default - now.
    type: str
  lookback:
    description:
      - How far back to look for the first alert when O(start) is not given, a duration with a unit (C(6h));
        C(1m) to C(365d).
      - A number of minutes before 1.0.0; a number without a unit is refused.
    type: str
    default: 6h
  matchers:
    description: Only alerts whose labels equal these values (for example C(severity=SEV1) or C(service=enrichment)).
    type: dict
    default: {}
  resolved_after:
    description: How long every alert must have stayed clear before the incident is V(Resolved), with a unit
      (C(15m), C(1h)).
    type: str
    default: 15m
  mitigated_at:
    description: When the fix was deployed (ISO 8601), for example the time a runbook procedure ran; a
      C(Fix deployed) row of the timeline and at least V(Mitigated).
    type: str
  mitigated_by:
    description: Who deployed the fix (the actor of the C(Fix deployed) row).
    type: str
  severity:
    description: Severity to report; default - the most severe C(SEVn) label among the incident's alerts.
    type: str
    choices: [SEV1, SEV2, SEV3, SEV4]
  services:
    description: Affected services to report; default - the C(service) (else C(job)) labels of the alerts.
    type: list
    elements: str
  impact_queries:
    description:
      - Impact counts, name to SQL returning one count, with C(%(start)s) and C(%(end)s) parameters; merged with the
        defaults C(bronze_contacts_affected), C(silver_companies_delayed), C(approval_tasks_breached).
      - "The defaults count what the incident touched, including what was already waiting when it began:
        bronze contacts created before the end and not processed by then (or failed), silver companies created
        before the end and not enriched before the start, approval tasks due before the end and undecided at
        the later of their due time and the start."
      - Trusted SQL from the playbook author; it runs in a read-only transaction.
    type: dict
    default: {}
  step:
    description:
      - Resolution of the Prometheus range query, a duration with a unit (C(30s)), rounded up to whole seconds;
        C(1s) to C(1d).
      - A number of seconds before 1.0.0; a number without a unit is refused.
    type: str
    default: 30s
  validate_certs:
    description: Verify TLS certificates of Prometheus and Alertmanager.
    type: bool
    default: true
  timeout:
    description:
      - How long to wait for each HTTP call, a duration with a unit (C(10s)); C(1s) to C(1h).
      - A number of seconds before 1.0.0; a number without a unit is refused.
    type: str
    default: 10s
'''

EXAMPLES = r'''
- name: Build the report of the incident that started this morning
  cerniq.ops.incident_info:
    prometheus_url: http://monitor1:9090
    alertmanager_url: http://monitor1:9093
    start: "2026-11-29T06:40:00Z"
    login_db: cerniq_db
  register: incident

- name: Save it
  ansible.builtin.copy:
    content: "{{ incident.markdown }}"
    dest: "reports/{{ incident.incident_id }}.md"
    mode: "0644"
  delegate_to: localhost
'''

RETURN = r'''
incident_id:
  description: Identifier used in the report.
  returned: always
  type: str
start:
  description: Start of the window (ISO 8601).
  returned: always
  type: str
end:
  description: End of the window (ISO 8601).
  returned: always
  type: str
severity:
  description: Reported severity (null when no alert carried one and none was given).
  returned: always
  type: str
status:
  description: V(Active), V(Mitigated) or V(Resolved), as defined in the description.
  returned: always
  type: str
  sample: Resolved
resolved_at:
  description: When the last alert of a V(Resolved) incident cleared (ISO 8601); null otherwise.
  returned: always
  type: str
periods:
  description: Firing periods from Prometheus - alertname, severity, labels, start, end (null while firing).
  returned: always
  type: list
  elements: dict
active:
  description: Alerts Alertmanager holds now - alertname, severity, state, receivers, starts_at.
  returned: always
  type: list
  elements: dict
silences:
  description:
    - Alertmanager silences in force at some moment of the window (empty without O(alertmanager_url)) - id, state
      (now), matchers, created_by, comment, starts_at, ends_at.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 5c3b6a5e-8f0e-4b8e-9a53-2c9d8e1f7a10
      state: expired
      matchers: ['alertname=~"PostgresSlowQueries|PostgresConnections"', 'instance=~"db1(:[0-9]+)?"']
      created_by: cerniq.ops
      comment: cerniq.ops daily maintenance of db1 (runbook 3.1)
      starts_at: "2026-11-29T02:30:00.120Z"
      ends_at: "2026-11-29T02:41:12.004Z"
impact:
  description: Impact counts by name (null when a query failed; see impact_errors).
  returned: always
  type: dict
impact_errors:
  description: Error of each impact query that failed.
  returned: always
  type: dict
markdown:
  description: The filled-in report of runbook 5.2.
  returned: always
  type: str
'''

import datetime
import json
import math

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option, format_duration
from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.incident import (
    IncidentError,
    active_alerts,
    alert_history,
    derive_severity,
    impact_counts,
    incident_status,
    parse_time,
    render_markdown,
    window_silences,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec,
    postgres_connect_module,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        incident_id=dict(type='str'),
        prometheus_url=dict(type='str', required=True),
        alertmanager_url=dict(type='str'),
        start=dict(type='str'),
        end=dict(type='str'),
        lookback=dict(type='str', default='6h'),
        matchers=dict(type='dict', default={}),
        severity=dict(type='str', choices=['SEV1', 'SEV2', 'SEV3', 'SEV4']),
        services=dict(type='list', elements='str'),
        impact_queries=dict(type='dict', default={}),
        step=dict(type='str', default='30s'),
        resolved_after=dict(type='str', default='15m'),
        mitigated_at=dict(type='str'),
        mitigated_by=dict(type='str'),
        validate_certs=dict(type='bool', default=True),
        timeout=dict(type='str', default='10s'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:   # before connecting
        lookback = duration_option(p['lookback'], 'lookback', 60, 365 * 86400)
        step = int(math.ceil(duration_option(p['step'], 'step', 1, 86400)))
        timeout = duration_option(p['timeout'], 'timeout', 1, 3600)
        resolved_after = duration_option(p['resolved_after'], 'resolved_after', 0, 365 * 86400)
    except DurationError as error:
        module.fail_json(msg=str(error))
    conn = postgres_connect_module(module)

    def fetch_json(url):
        try:
            response = open_url(url, timeout=timeout, validate_certs=p['validate_certs'])
            return json.loads(response.read().decode('utf-8'))
        except Exception as error:  # pylint: disable=broad-except
            raise IncidentError('cannot read %s: %s' % (url.split('?')[0], str(error).strip().splitlines()[0]))

    try:
        mitigated_at = parse_time(p['mitigated_at'])
        end = parse_time(p['end']) or datetime.datetime.now(datetime.timezone.utc)
        start = parse_time(p['start'])
        if start is not None and start >= end:
            module.fail_json(msg='start must be before end')
        search_from = start or end - datetime.timedelta(seconds=lookback)
        periods = alert_history(p['prometheus_url'], search_from, end, fetch_json, step, p['matchers'])
        active = active_alerts(p['alertmanager_url'], fetch_json, p['matchers']) if p['alertmanager_url'] else []
        if start is None:
            firsts = [parse_time(x['start']) for x in periods]
            firsts += [parse_time(a['starts_at']) for a in active if a.get('starts_at')]
            firsts = [t for t in firsts if t and t >= search_from]
            if not firsts:
                module.fail_json(msg='no firing alert in the last %s (lookback): give start explicitly'
                                 % format_duration(lookback))
            start = min(firsts)
        silences = window_silences(p['alertmanager_url'], fetch_json, start, end) if p['alertmanager_url'] else []
    except (IncidentError, DurationError) as error:
        conn.close()
        fail_engine_error(module, error)
    incident_id = p['incident_id'] or 'INC-%s' % start.strftime('%Y%m%d-%H%M')
    try:
        counts, errors = impact_counts(conn, start, end, p['impact_queries'])
    finally:
        conn.close()
    severity = p['severity'] or derive_severity(periods, active)
    # what Alertmanager holds now says nothing about an end in the past
    status, resolved_at = incident_status(periods, active if p['end'] is None else [], end, resolved_after,
                                          mitigated_at)
    markdown = render_markdown(incident_id, start, end, periods, active, counts, errors, severity, p['services'],
                               silences=silences, status=status, resolved_at=resolved_at,
                               resolved_after_seconds=resolved_after, mitigated_at=mitigated_at,
                               mitigated_by=p['mitigated_by'])
    module.exit_json(changed=False, incident_id=incident_id, start=start.isoformat(), end=end.isoformat(),
                     severity=severity, status=status, resolved_at=resolved_at.isoformat() if resolved_at else None,
                     periods=periods, active=active, silences=silences, impact=counts, impact_errors=errors,
                     markdown=markdown)


if __name__ == '__main__':
    main()
