#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pg_maintenance
short_description: VACUUM, ANALYZE and REINDEX CONCURRENTLY on a live PostgreSQL database
version_added: 0.1.0
description:
  - Runs VACUUM, ANALYZE, REINDEX (CONCURRENTLY by default) and drops of invalid leftover indexes, for listed
    tables and indexes or for the candidates found by the health report (O(targets=auto)).
  - Each object gets a short C(lock_timeout) (O(lock_timeout), doubling up to O(lock_timeout_max)) with retries and
    backoff inside O(lock_wait_budget). An object whose lock cannot be had in time is skipped and reported;
    the run continues. Other sessions are never cancelled or terminated.
  - Between attempts the module holds no place in any lock queue, so queries arriving behind it wait at most the
    current C(lock_timeout).
  - After a failed REINDEX CONCURRENTLY, the C(_ccnew)/C(_ccold) invalid indexes that attempt left are dropped
    (invalid indexes that existed before, or tables with a build in progress in another session, are left alone).
  - All objects are looked up first; a missing object, a bad name or a refused action fails the task before anything
    runs. The exception is an index to drop with V(drop_invalid_index) that does not exist (any more) - its result is
    V(absent) and it changes nothing, so running the same task again is ok and reports C(changed=false).
  - Option bounds and task specs are checked before connecting. Every duration is a string with a unit
    (C(100ms), C(30s), C(1h)); a number without a unit is refused.
extends_documentation_fragment:
  - cerniq.ops.postgres
attributes:
  check_mode:
    support: full
    description: Looks objects up and returns the plan (RV(operations[].sql)) without running any statement.
  diff_mode:
    support: none
    description: Nothing to diff; RV(operations) lists every statement.
options:
  targets:
    description:
      - V(tasks) runs O(tasks).
      - V(auto) asks the health engine for vacuum candidates (dead tuples, freeze age) and reindex candidates
        (invalid indexes, bloated indexes) using O(thresholds), and runs O(auto_actions) on them.
    type: str
    choices: [tasks, auto]
    default: tasks
  tasks:
    description: What to do, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      action:
        description:
          - V(drop_invalid_index) drops an index only if it is invalid and no build is in progress on its table; an index
            that does not exist is reported V(absent) (nothing to do).
        type: str
        required: true
        choices: [vacuum, analyze, reindex, drop_invalid_index]
      table:
        description: Table (C(schema.table) or C(table); quote odd names C("My Table")). Exactly one of O(tasks[].table), O(tasks[].index).
        type: str
      index:
        description: Index for V(reindex) or V(drop_invalid_index).
        type: str
      analyze:
        description: VACUUM (ANALYZE).
        type: bool
        default: true
      freeze:
        description: VACUUM (FREEZE).
        type: bool
        default: false
      full:
        description: VACUUM FULL. Refused unless O(allow_vacuum_full=true).
        type: bool
        default: false
      truncate:
        description:
          - VACUUM (TRUNCATE). Off by default, so VACUUM never asks for the ACCESS EXCLUSIVE lock that returning
            the empty end of the table to the operating system needs; the space stays reusable by the table.
        type: bool
        default: false
      skip_locked:
        description: VACUUM/ANALYZE (SKIP_LOCKED); a table it skips is reported with result V(skipped).
        type: bool
        default: false
      concurrently:
        description: REINDEX CONCURRENTLY (refused on PostgreSQL 14.0-14.3). V(false) blocks writes for the whole rebuild.
        type: bool
        default: true
  auto_actions:
    description: With O(targets=auto), which kinds of candidates to act on (V(cleanup_invalid) drops C(_ccnew)/C(_ccold) leftovers).
    type: list
    elements: str
    choices: [vacuum, freeze, reindex, cleanup_invalid]
    default: [vacuum, freeze, reindex, cleanup_invalid]
  thresholds:
    description: With O(targets=auto), thresholds for the health engine (see M(cerniq.ops.pg_health_info) O(cerniq.ops.pg_health_info#module:thresholds)).
    type: dict
    default: {}
  schemas:
    description: With O(targets=auto), the schemas to consider (default all but system schemas).
    type: list
    elements: str
  allow_vacuum_full:
    description: Allow VACUUM FULL (ACCESS EXCLUSIVE lock for the whole rewrite; a warning is returned).
    type: bool
    default: false
  lock_timeout:
    description: First C(lock_timeout) of each object, a duration with a unit (C(100ms)); from C(1ms) to
      C(24d20h31m23s647ms), PostgreSQL's limit.
    type: str
    default: 100ms
  lock_timeout_max:
    description: Cap of C(lock_timeout) while doubling between retries, a duration with a unit; at least
      O(lock_timeout).
    type: str
    default: 1s
  lock_wait_budget:
    description: How long to keep trying to get one object's locks before skipping it, a duration with a unit
      (C(30s)); C(0s) to C(30d).
    type: str
    default: 30s
  statement_timeout:
    description: C(statement_timeout) of each statement, a duration with a unit (C(1h)); C(0s) for none (at most
      C(24d20h31m23s647ms)).
    type: str
    default: 1h
  cleanup_budget:
    description: How long to spend dropping the invalid indexes a failed REINDEX CONCURRENTLY left, a duration with
      a unit (C(0s) to C(30d)).
    type: str
    default: 1m
  time_budget:
    description:
      - How long the whole run may start new objects, a duration with a unit (C(1h)); objects not started when it
        is spent are skipped. Unset for no limit; otherwise C(1s) to C(30d).
    type: str
  fail_on_skipped:
    description: Fail the task when an object was skipped (by default skipped objects only produce a warning).
    type: bool
    default: false
notes:
  - The task fails when an object failed (its error is in RV(operations[].reason)); the other objects still ran.
seealso:
  - module: cerniq.ops.pg_health_info
author:
  - cerniq.ops contributors (@cerniq)
'''

EXAMPLES = r'''
- name: Daily vacuum analyze of the pipeline tables
  cerniq.ops.pg_maintenance:
    login_db: cerniq_db
    tasks:
      - {action: vacuum, table: bronze_contacts}
      - {action: vacuum, table: silver_companies}

- name: Rebuild bloated or invalid indexes, concurrently
  cerniq.ops.pg_maintenance:
    login_db: cerniq_db
    targets: auto
    auto_actions: [reindex, cleanup_invalid]
    thresholds:
      index_bloat_pct: 50
      index_bloat_min_bytes: 104857600

- name: Explicit VACUUM FULL in a maintenance window
  cerniq.ops.pg_maintenance:
    login_db: cerniq_db
    allow_vacuum_full: true
    tasks:
      - {action: vacuum, table: silver_enrichment_log, full: true}
'''

RETURN = r'''
operations:
  description:
    - One entry per operation (VACUUM, ANALYZE, REINDEX, DROP INDEX), in order.
    - Called C(results) before 1.0.0 (the key Ansible reads as the results of a loop).
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: One of V(vacuum), V(analyze), V(reindex), V(drop_invalid_index).
      type: str
    object:
      description: Schema-qualified object name.
      type: str
    kind:
      description: V(table) or V(index).
      type: str
    sql:
      description: The statement (identifiers quoted).
      type: str
    lock:
      description: Strongest lock the statement takes.
      type: str
    result:
      description: V(done), V(skipped), V(failed), V(planned) in check mode, or V(absent) for an index to drop that does
        not exist.
      type: str
    reason:
      description: Why it was skipped or failed (or why O(targets=auto) picked it).
      type: str
    duration_ms:
      description: Wall time including lock retries.
      type: int
    attempts:
      description: Statement attempts (lock retries + 1).
      type: int
    cleanup:
      description: After a failed REINDEX CONCURRENTLY, the leftover indexes dropped and any left (with reason).
      type: dict
      returned: when something had to be cleaned up
  sample:
    - action: vacuum
      object: public.bronze_contacts
      kind: table
      sql: VACUUM (ANALYZE, TRUNCATE false) "public"."bronze_contacts"
      result: done
      duration_ms: 41
summary:
  description: Count of RV(operations) by outcome.
  returned: always
  type: dict
  sample: {done: 3, skipped: 1, failed: 0, planned: 0, absent: 0}
candidates:
  description: With O(targets=auto), what the health report found - C(vacuum) (its RV(cerniq.ops.pg_health_info#module:vacuum_candidates))
    and C(reindex) (its RV(cerniq.ops.pg_health_info#module:reindex_candidates)).
  returned: when targets is auto
  type: dict
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
    MAINTENANCE_SECTIONS,
    HealthError,
    check_report_options,
    maintenance_tasks,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_maintenance import (
    DEFAULTS as SETTINGS,
    MaintenanceError,
    MaintenanceRunner,
    check_settings,
    check_tasks,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        targets=dict(type='str', choices=['tasks', 'auto'], default='tasks'),
        tasks=dict(type='list', elements='dict', default=[], options=dict(
            action=dict(type='str', required=True, choices=['vacuum', 'analyze', 'reindex', 'drop_invalid_index']),
            table=dict(type='str'),
            index=dict(type='str'),
            analyze=dict(type='bool', default=True),
            freeze=dict(type='bool', default=False),
            full=dict(type='bool', default=False),
            truncate=dict(type='bool', default=False),
            skip_locked=dict(type='bool', default=False),
            concurrently=dict(type='bool', default=True),
        )),
        auto_actions=dict(type='list', elements='str', choices=['vacuum', 'freeze', 'reindex', 'cleanup_invalid'],
                          default=['vacuum', 'freeze', 'reindex', 'cleanup_invalid']),
        thresholds=dict(type='dict', default={}),
        schemas=dict(type='list', elements='str'),
        allow_vacuum_full=dict(type='bool', default=False),
        lock_timeout=dict(type='str', default='100ms'),
        lock_timeout_max=dict(type='str', default='1s'),
        lock_wait_budget=dict(type='str', default='30s'),
        statement_timeout=dict(type='str', default='1h'),
        cleanup_budget=dict(type='str', default='1m'),
        time_budget=dict(type='str'),
        fail_on_skipped=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if params['targets'] == 'tasks' and not params['tasks']:
        module.fail_json(msg='tasks is empty: list tasks or set targets=auto')
    if params['targets'] == 'auto' and params['tasks']:
        module.fail_json(msg='targets=auto and tasks are mutually exclusive')
    settings = dict((name, params[name]) for name in SETTINGS)
    report_options = dict(thresholds=params['thresholds'], schemas=params['schemas'])
    try:  # every refusal that needs no server, before connecting
        check_settings(settings)
        if params['targets'] == 'auto':
            check_report_options(sections=MAINTENANCE_SECTIONS, **report_options)
        else:
            check_tasks(params['tasks'])
    except (MaintenanceError, HealthError) as error:
        fail_engine_error(module, error, operations=[])

    conn = postgres_connect_module(module, autocommit=True)
    try:
        candidates = None
        if params['targets'] == 'auto':
            tasks, report = maintenance_tasks(conn, actions=params['auto_actions'], **report_options)
            candidates = dict(vacuum=report['vacuum_candidates'], reindex=report['reindex_candidates'])
        else:
            tasks = params['tasks']
        runner = MaintenanceRunner(conn, allow_vacuum_full=params['allow_vacuum_full'], check_mode=module.check_mode,
                                   **settings)
        outcome = runner.run(tasks)
    except (MaintenanceError, HealthError) as error:
        fail_engine_error(module, error, operations=[])
    except POSTGRES_ERRORS as error:
        module.fail_json(msg='maintenance failed before any statement ran: %s' % error_line(error), operations=[],
                         changed=False)
    finally:
        conn.close()

    for warning in outcome['warnings']:
        module.warn(warning)
    skipped = [r for r in outcome['operations'] if r['result'] == 'skipped']
    failed = [r for r in outcome['operations'] if r['result'] == 'failed']
    for row in skipped:
        module.warn('skipped %s of %s: %s' % (row['action'], row['object'], row['reason']))
    result = dict(changed=outcome['changed'], operations=outcome['operations'], summary=outcome['summary'])
    if candidates is not None:
        result['candidates'] = candidates
    if failed or (skipped and params['fail_on_skipped']):
        bad = failed + (skipped if params['fail_on_skipped'] else [])
        module.fail_json(msg='%d object(s) not maintained: %s' % (len(bad), '; '.join(
            '%s %s: %s' % (r['action'], r['object'], r['reason']) for r in bad)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
