#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: capacity_info
short_description: CERNIQ capacity report - daily series of runbook 6.1 judged against the 6.2 thresholds
description:
  - Runs the three capacity queries of runbook 6.1 (daily ingestion with average processing time, enrichment
    throughput per source, HITL tasks created and resolved with average resolution time) over O(period),
    aggregated on the server (one row per day).
  - Judges the current load against the 6.2 scaling thresholds, per object, with the definitions of the shipped alert
    rules - queue depth (waiting jobs) and processing latency (waiting jobs / jobs finished per second) per queue,
    connections over C(max_connections) per PostgreSQL instance, memory and the fullest filesystem per
    node_exporter host. With O(prometheus_url) they are read from the rules' recorded series
    (C(queue:bullmq_jobs_waiting:sum), C(queue:bullmq_processing_latency:seconds),
    C(instance:pg_connections_used:ratio), C(instance:node_memory_used:ratio),
    C(instance_mountpoint:node_filesystem_used:ratio)), so the report and the alerts agree, for every host
    Prometheus scrapes.
  - A metric Prometheus has no series for comes from O(measurements); connections are then measured on the
    connected server with the same definition. Each exceeded threshold comes with its scale action.
  - Returns the data and the report rendered as Markdown and as a self-contained HTML page with charts.
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
  period:
    description:
      - How far back the daily series go, a duration with a unit (C(30 days), C(12w)), rounded up to whole days;
        C(1d) to C(3660d).
      - Called C(days) (a number of days) before 1.0.0; a number without a unit is refused.
    type: str
    default: 30 days
  tables:
    description: Table names, for schemas that differ from CERNIQ's.
    type: dict
    default: {}
    suboptions:
      bronze_contacts:
        description: Bronze contacts (C(created_at), C(processed_at)).
        type: str
      enrichment_log:
        description: Enrichment log (C(source), C(created_at), C(duration_ms)).
        type: str
      approval_tasks:
        description: Approval tasks (C(created_at), C(decided_at)).
        type: str
  measurements:
    description:
      - Current values measured elsewhere, for the metrics Prometheus does not give, keyed by threshold name -
        C(queue_depth) (waiting jobs - wait, prioritized and paused), C(processing_latency) (seconds, waiting
        jobs / jobs finished per second), C(db_connections), C(memory), C(disk) (percent).
      - Each a number, or a mapping from object (queue, instance) to number - one verdict per object.
      - C(db_connections) is measured by the module when neither Prometheus nor this gives it.
    type: dict
    default: {}
  prometheus_url:
    description:
      - Prometheus base URL; the 6.2 metrics are read from the recorded series of the shipped rules there.
      - Unreachable or refusing, the report says so and falls back on O(measurements).
    type: str
  validate_certs:
    description: Verify the TLS certificate of O(prometheus_url).
    type: bool
    default: true
  queues:
    description:
      - The pipeline's queues; one not measured at all gets an C(unknown) row instead of going unnoticed.
    type: list
    elements: str
    default: []
  thresholds:
    description:
      - Overrides of the 6.2 thresholds, keyed by C(queue_depth), C(processing_latency), C(db_connections),
        C(memory), C(disk); each a mapping with C(warning), C(critical) and C(action).
    type: dict
    default: {}
  title:
    description: Title of the rendered report.
    type: str
    default: CERNIQ capacity report
'''

EXAMPLES = r'''
- name: Build the capacity report from Prometheus (the alert rules' series)
  cerniq.ops.capacity_info:
    login_db: cerniq_db
    prometheus_url: http://prometheus.internal:9090
    queues: [bronze:ingest:csv, silver:enrich:anaf-fiscal-status]
  register: capacity

- name: Without Prometheus - queue depth per queue measured elsewhere
  cerniq.ops.capacity_info:
    login_db: cerniq_db
    measurements:
      queue_depth: {'bronze:ingest:csv': 1500, 'silver:score:quality': 20}

- name: Save it as Markdown
  ansible.builtin.copy:
    content: "{{ capacity.markdown }}"
    dest: /var/www/reports/capacity.md
    mode: "0644"
'''

RETURN = r'''
series:
  description: The daily series of runbook 6.1, oldest day first.
  returned: always
  type: dict
  contains:
    ingestion:
      description: date, contacts_ingested, avg_processing_seconds.
      type: list
      elements: dict
    enrichment:
      description: date, source, enrichments, avg_duration_ms.
      type: list
      elements: dict
    hitl:
      description: date, tasks_created, tasks_resolved, avg_resolution_hours.
      type: list
      elements: dict
connections:
  description:
    - Backends attached to a database on the connected server (the exporter's C(pg_stat_activity_count)),
      max_connections, the superuser reserve and percent of max_connections (the rules' definition).
  returned: always
  type: dict
verdicts:
  description:
    - One per metric and object - metric, label, object (queue, instance; null for a single value), value, unit,
      status (ok, warning, critical, unknown), action, note (the filesystem, or why there is no value).
  returned: always
  type: list
  elements: dict
sources:
  description: Where each metric was measured (Prometheus, given, the connected server), and Prometheus errors.
  returned: always
  type: list
  elements: str
exceeded:
  description: The verdicts with status warning or critical.
  returned: always
  type: list
  elements: dict
markdown:
  description: The report as Markdown.
  returned: always
  type: str
html:
  description: The report as a self-contained HTML page with inline SVG charts.
  returned: always
  type: str
'''

import json
import math

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option
from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.capacity import (
    CapacityError,
    add_missing_queues,
    connection_usage,
    daily_series,
    judge,
    measurement_rows,
    prometheus_measurements,
    render_html,
    render_markdown,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    describe_server,
    postgres_argument_spec,
    postgres_connect_module,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        period=dict(type='str', default='30 days'),
        tables=dict(type='dict', default={}, options=dict(
            bronze_contacts=dict(type='str'), enrichment_log=dict(type='str'), approval_tasks=dict(type='str'))),
        measurements=dict(type='dict', default={}),
        thresholds=dict(type='dict', default={}),
        title=dict(type='str', default='CERNIQ capacity report'),
        prometheus_url=dict(type='str'),
        validate_certs=dict(type='bool', default=True),
        queues=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:
        days = int(math.ceil(duration_option(p['period'], 'period', 86400, 3660 * 86400) / 86400.0))
    except DurationError as error:
        module.fail_json(msg=str(error))
    measured, origin, sources = {}, {}, []
    try:
        for key, value in (p['measurements'] or {}).items():
            rows = measurement_rows(value)
            if rows:
                measured[key], origin[key] = rows, 'given'
    except CapacityError as error:
        fail_engine_error(module, error)

    def fetch_json(url):
        try:
            response = open_url(url, timeout=10, validate_certs=p['validate_certs'])
            return json.loads(response.read().decode('utf-8'))
        except Exception as error:  # pylint: disable=broad-except
            raise CapacityError('cannot read %s: %s' % (url.split('?')[0], str(error).strip().splitlines()[0]))

    if p['prometheus_url']:
        try:
            for key, rows in prometheus_measurements(p['prometheus_url'], fetch_json).items():
                # Objects Prometheus does not know (a queue without exporter keys) keep the given value.
                seen = {row['object'] for row in rows}
                extra = [row for row in measured.get(key, []) if row['object'] not in seen]
                measured[key] = sorted(rows + extra, key=lambda row: row['object'])
                origin[key] = 'Prometheus %s%s' % (p['prometheus_url'], ' and given' if extra else '')
        except CapacityError as error:
            sources.append('Prometheus %s FAILED (%s)' % (p['prometheus_url'], error))
            module.warn('capacity report without Prometheus: %s' % error)
    conn = postgres_connect_module(module)
    try:
        tables = {key: value for key, value in (p['tables'] or {}).items() if value}
        series = daily_series(conn, days, tables)
        connections = connection_usage(conn)
        if 'db_connections' not in measured:
            measured['db_connections'] = [dict(object=describe_server(p), value=connections['percent'], note=None)]
            origin['db_connections'] = 'the connected server'
        verdicts = judge(add_missing_queues(measured, p['queues']), p['thresholds'])
        sources += ['%s: %s' % (key, origin[key]) for key in sorted(origin)]
    except CapacityError as error:
        fail_engine_error(module, error)
    except Exception as error:  # psycopg2 errors: missing table or column
        module.fail_json(msg='capacity queries failed: %s' % str(error).strip().splitlines()[0])
    finally:
        conn.close()
    module.exit_json(changed=False, series=series, connections=connections, verdicts=verdicts, sources=sources,
                     exceeded=[v for v in verdicts if v['status'] in ('warning', 'critical')],
                     markdown=render_markdown(series, verdicts, p['title'], sources=sources),
                     html=render_html(series, verdicts, p['title'], sources=sources))


if __name__ == '__main__':
    main()
