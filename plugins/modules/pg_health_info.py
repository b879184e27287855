#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pg_health_info
short_description: Index, bloat, vacuum, session, connection and orphan report of a PostgreSQL database
version_added: 0.1.0
description:
  - Read-only report used by the maintenance playbooks and by M(cerniq.ops.pg_maintenance) with C(targets=auto).
  - Unused indexes have C(idx_scan = 0) and at least O(thresholds) C(unused_index_min_bytes); primary key, unique and
    constraint-backed indexes (C(pg_constraint.conindid)) are never listed. The age of the statistics
    (C(pg_stat_database.stats_reset)) is returned with them.
  - Bloat is an ioguix-style estimate from C(pg_stats) (rows with C(is_na=true) are not trusted); when the
    C(pgstattuple) extension is installed and readable (superuser or C(pg_stat_scan_tables)), C(pgstatindex) and
    C(pgstattuple_approx) measure it instead (C(method=pgstattuple)).
  - Invalid indexes are reported with C(kind) V(ccnew) or V(ccold) for leftovers of an interrupted REINDEX
    CONCURRENTLY, V(invalid) otherwise.
  - Orphan checks are named; each is either a read-only C(query) returning a count (or rows, counted) or the
    structured keys C(child_table), C(child_column), C(parent_table), C(parent_column) (identifiers quoted).
extends_documentation_fragment:
  - cerniq.ops.postgres
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only report; nothing to diff.
options:
  sections:
    description: Sections to include (default all).
    type: list
    elements: str
    choices: [index_usage, unused_indexes, index_bloat, table_bloat, invalid_indexes, vacuum_candidates, sessions,
              connections, orphans, reindex_candidates]
  thresholds:
    description:
      - Overrides of the thresholds. Keys (defaults) C(unused_index_min_bytes) (10 MiB), C(min_stats_age) (C(14 days)),
        C(index_bloat_pct) (50), C(index_bloat_min_bytes) (100 MiB), C(table_bloat_pct) (40),
        C(table_bloat_min_bytes) (100 MiB), C(dead_tuples_pct) (5), C(min_dead_tuples) (100),
        C(freeze_age) (10000000), C(long_running) (C(5m)), C(idle_in_transaction) (C(1m)),
        C(connections_warn_pct) (80).
      - C(min_stats_age), C(long_running) and C(idle_in_transaction) are durations with a unit (a number without a
        unit is refused); they were C(min_stats_age_days), C(long_running_seconds) and C(idle_in_transaction_seconds)
        (numbers) before 1.0.0. Every other key is a finite number >= 0. An unknown key or another value fails the
        task before connecting.
    type: dict
    default: {}
  schemas:
    description: Schemas to report on (default all but system schemas).
    type: list
    elements: str
  exact_bloat:
    description:
      - V(auto) uses pgstattuple (when installed) for indexes and tables at least as large as the bloat size
        thresholds; V(always) for all of them (reads every index fully); V(never) estimates only.
    type: str
    choices: [auto, always, never]
    default: auto
  orphan_checks:
    description: Named orphan checks (see description).
    type: list
    elements: dict
    default: []
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Index and vacuum report
  cerniq.ops.pg_health_info:
    login_db: cerniq_db
    sections: [index_usage, unused_indexes, invalid_indexes, index_bloat, vacuum_candidates]
  register: health

- name: Runbook orphan check (silver rows whose bronze source is gone)
  cerniq.ops.pg_health_info:
    login_db: cerniq_db
    sections: [orphans]
    orphan_checks:
      - name: orphan_silver
        child_table: silver_companies
        child_column: source_bronze_id
        parent_table: bronze_contacts
        parent_column: id
'''

RETURN = r'''
stats:
  description: C(stats_reset), C(stats_age_days) (null if never reset) and C(server_uptime_days).
  returned: always
  type: dict
index_usage:
  description: Every user index with scans, size, primary/unique/constraint flags.
  returned: when requested
  type: list
  elements: dict
unused_indexes:
  description: Indexes never scanned since the stats reset, big enough, not PK/unique/constraint-backed.
  returned: when requested
  type: list
  elements: dict
index_bloat:
  description: B-tree indexes with C(bloat_pct), C(bloat_bytes), C(method) (estimate or pgstattuple), C(is_na).
  returned: when requested
  type: list
  elements: dict
table_bloat:
  description: Tables with C(bloat_pct), C(bloat_bytes), C(method), C(is_na).
  returned: when requested
  type: list
  elements: dict
invalid_indexes:
  description: Invalid indexes with C(kind) (ccnew, ccold, invalid) and C(build_in_progress).
  returned: when requested
  type: list
  elements: dict
vacuum_candidates:
  description: Tables over the dead tuple or freeze age thresholds, with C(reasons) and C(why).
  returned: when requested
  type: list
  elements: dict
sessions:
  description: C(long_running) and C(idle_in_transaction) sessions (pid, user, application, seconds, query).
  returned: when requested
  type: dict
connections:
  description: Client connections by state versus C(max_connections), C(usage_pct), C(warning).
  returned: when requested
  type: dict
orphans:
  description: One entry per orphan check with C(name), C(count), C(error), C(sql).
  returned: when requested
  type: list
  elements: dict
reindex_candidates:
  description: Invalid (not being built) and bloated indexes with the C(action) to take and C(reason).
  returned: when requested
  type: list
  elements: dict
thresholds:
  description: The thresholds used (the durations written with a unit, for example C(long_running) C(5m)).
  returned: always
  type: dict
server_version_num:
  description: The server's version as a number (C(server_version_num), for example C(150007)).
  returned: always
  type: int
  sample: 150007
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    POSTGRES_ERRORS,
    error_line,
    postgres_argument_spec,
    postgres_connect_module,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_health import (
    SECTIONS,
    HealthError,
    check_report_options,
    health_report,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        sections=dict(type='list', elements='str', choices=list(SECTIONS)),
        thresholds=dict(type='dict', default={}),
        schemas=dict(type='list', elements='str'),
        exact_bloat=dict(type='str', choices=['auto', 'always', 'never'], default='auto'),
        orphan_checks=dict(type='list', elements='dict', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    options = dict((name, module.params[name]) for name in
                   ('sections', 'thresholds', 'schemas', 'exact_bloat', 'orphan_checks'))
    try:
        check_report_options(**options)  # before connecting
    except HealthError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module, autocommit=True)
    try:
        report = health_report(conn, **options)
    except HealthError as error:
        fail_engine_error(module, error)
    except POSTGRES_ERRORS as error:
        module.fail_json(msg='health report failed: %s' % error_line(error))
    finally:
        conn.close()
    for warning in report.pop('warnings'):
        module.warn(warning)
    module.exit_json(changed=False, **report)


if __name__ == '__main__':
    main()
