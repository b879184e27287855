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
    throughput per source, HITL tasks created and resolved with average resolution time) over a window of days,
    aggregated on the server (one row per day).
  - Measures database connection use against C(max_connections) and judges it, with the queue depth, processing
    latency, memory and disk use given in O(measurements), against the 6.2 scaling thresholds; each exceeded
    threshold comes with its scale action.
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
  days:
    description: Window of the daily series, in days.
    type: int
    default: 30
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
      - Current values measured elsewhere, keyed by threshold name - C(queue_depth) (waiting jobs),
        C(processing_latency) (seconds, for example the age of the oldest waiting job), C(memory) and C(disk)
        (percent used). C(db_connections) is measured by the module unless given.
    type: dict
    default: {}
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
- name: Build the capacity report
  cerniq.ops.capacity_info:
    login_db: cerniq_db
    measurements:
      queue_depth: "{{ waiting_jobs }}"
      processing_latency: "{{ oldest_waiting_age_seconds }}"
      memory: "{{ (100 - 100 * ansible_facts.memfree_mb / ansible_facts.memtotal_mb) | round(1) }}"
  register: capacity

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
  description: Client connections in use, max_connections, reserved slots and percent of the usable ones.
  returned: always
  type: dict
verdicts:
  description: One per threshold - metric, label, value, unit, status (ok, warning, critical, unknown), action.
  returned: always
  type: list
  elements: dict
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq_capacity import (
    CapacityError,
    connection_usage,
    daily_series,
    judge,
    render_html,
    render_markdown,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec,
    postgres_connect_module,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        days=dict(type='int', default=30),
        tables=dict(type='dict', default={}, options=dict(
            bronze_contacts=dict(type='str'), enrichment_log=dict(type='str'), approval_tasks=dict(type='str'))),
        measurements=dict(type='dict', default={}),
        thresholds=dict(type='dict', default={}),
        title=dict(type='str', default='CERNIQ capacity report'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if p['days'] < 1 or p['days'] > 3660:
        module.fail_json(msg='days must be between 1 and 3660')
    measurements = {}
    for key, value in (p['measurements'] or {}).items():
        if value in (None, ''):
            continue
        try:
            measurements[key] = float(value)
        except (TypeError, ValueError):
            module.fail_json(msg='measurement %s must be a number, got %r' % (key, value))
    conn = postgres_connect_module(module)
    try:
        tables = {key: value for key, value in (p['tables'] or {}).items() if value}
        series = daily_series(conn, p['days'], tables)
        connections = connection_usage(conn)
        measurements.setdefault('db_connections', connections['percent'])
        verdicts = judge(measurements, p['thresholds'])
    except CapacityError as error:
        module.fail_json(msg=str(error))
    except Exception as error:  # psycopg2 errors: missing table or column
        module.fail_json(msg='capacity queries failed: %s' % str(error).strip().splitlines()[0])
    finally:
        conn.close()
    module.exit_json(changed=False, series=series, connections=connections, verdicts=verdicts,
                     exceeded=[v for v in verdicts if v['status'] in ('warning', 'critical')],
                     markdown=render_markdown(series, verdicts, p['title']),
                     html=render_html(series, verdicts, p['title']))


if __name__ == '__main__':
    main()
