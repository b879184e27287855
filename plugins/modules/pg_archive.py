#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pg_archive
short_description: Move or purge old rows of a live PostgreSQL table without losing any
description:
  - Moves the rows of O(source_table) whose O(timestamp_column) is older than a cutoff into
    O(archive_table), or deletes them when O(archive_table) is omitted (purge).
  - The cutoff is computed once per run on the server (its current time minus O(older_than)) or given in O(cutoff),
    passed to every statement as a parameter and returned. Rows at or after the cutoff never move.
  - Each batch is one statement (a C(DELETE ... RETURNING) feeding an C(INSERT INTO archive ... SELECT) in one
    C(WITH) query) in its own short transaction, so exactly the deleted rows are archived and the run can be killed
    and run again at any point. Rows never travel through the module.
  - Batches walk the table's physical blocks (PostgreSQL 14+ TID range scans; see O(strategy)) and adapt their size
    toward O(target_batch_time). A read-only count in block ranges follows; if due rows are left (rows concurrent
    updates moved into blocks already passed, or rows other sessions held), a second block pass moves them and
    the count is taken again. A batch that meets a row another session holds waits at most O(lock_timeout), then
    runs again skipping locked rows; those are counted in RV(left_for_next_run).
  - For a source RANGE-partitioned on O(timestamp_column), partitions entirely older than the cutoff are
    detached concurrently and moved whole (see O(partition_mode)); only partitions with newer rows are batched.
  - Refused before any row is touched (the task fails with one line and changes nothing) - a duration without a
    unit, a cutoff in the future or not finite, a O(timestamp_column) that is not C(timestamp), C(timestamptz) or
    C(date), an archive table that is the source or in its partition or inheritance tree, a O(where) that is not one
    balanced expression, and a source whose rows are referenced by C(ON DELETE CASCADE), C(SET NULL) or
    C(SET DEFAULT) foreign keys or that has C(DELETE) triggers or rules (unless O(allow_delete_side_effects)).
  - See C(docs/pg_archive.md) for the semantics and measured figures.
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
attributes:
  check_mode:
    support: full
    description: Counts the rows that would move with one query and lists the partitions that would be moved whole;
      writes nothing.
  diff_mode:
    support: full
    description: The number of due rows before and after the run.
options:
  source_table:
    description: The table to archive from, C([schema.]name); quote unusual names with double quotes.
    type: str
    required: true
  archive_table:
    description:
      - The table receiving the moved rows, C([schema.]name). It must have every column of the source with
        the same type (extra nullable columns are allowed); otherwise the task fails before any change.
      - Omit it to purge (delete) the old rows instead.
    type: str
  create_archive:
    description:
      - Create O(archive_table) when missing, as C(LIKE source) with its constraints and indexes but without
        defaults, identity or generated expressions, so it takes the source's values as they are.
    type: bool
    default: false
  allow_delete_side_effects:
    description:
      - Archive even when deleting from O(source_table) changes other rows - foreign keys referencing it with
        C(ON DELETE CASCADE), C(SET NULL) or C(SET DEFAULT) (rows of other tables, or of the source itself, are
        deleted or changed and not archived), enabled C(DELETE) triggers, or C(DELETE) rules.
      - When false (the default) such a source is refused before any change; the task's result lists them in
        RV(delete_side_effects), in check mode too.
    type: bool
    default: false
  timestamp_column:
    description:
      - Column compared with the cutoff. It must be C(timestamp), C(timestamptz) or C(date) (or a domain over
        one of them); any other type is refused.
    type: str
    default: created_at
  older_than:
    description:
      - How old a row must be to move - a duration with units, such as C(90 days), C(36h), C(1 week 2 days),
        C(3 months) (units C(ms), C(s), C(m) (minutes), C(h), C(d), C(w), also spelled out, and the calendar units
        C(mon)/C(months) and C(y)/C(years)).
      - The cutoff is the server's current time minus this duration, computed once. A number without a unit
        (PostgreSQL would read C(90) as 90 seconds), a sign, C(ago) and zero are refused.
      - Exclusive with O(cutoff).
    type: str
  cutoff:
    description:
      - An explicit cutoff, a timestamp (or date) the column's type accepts; rows with O(timestamp_column)
        strictly before it move.
      - It must not be after the server's current time, and must be finite (C(infinity) is refused).
    type: str
  where:
    description:
      - An extra SQL condition rows must also meet, for example C(processing_status = 'promoted').
      - It is trusted SQL written by the playbook author and inserted into the statements as is, always inside
        its own parentheses; never build it from user data.
      - It must be one balanced expression - read as PostgreSQL reads it (quotes, C(E'') strings, quoted
        identifiers, dollar quotes, C(--) and nested C(/* */) comments), parentheses and brackets must balance
        and never close one they did not open, and a C(;) outside quotes is refused.
      - When set, old partitions are batched rather than moved whole.
    type: str
  batch_size:
    description: Initial rows per batch; adapts toward O(target_batch_time) between O(min_batch_size) and O(max_batch_size).
    type: int
    default: 5000
  min_batch_size:
    description: Lower bound of the adaptive batch size.
    type: int
    default: 100
  max_batch_size:
    description: Upper bound of the adaptive batch size.
    type: int
    default: 100000
  target_batch_time:
    description: Transaction time each batch aims for, a duration with a unit (C(200ms)); C(1ms) to C(10m).
    type: str
    default: 200ms
  time_budget:
    description:
      - How long the run may start new batches, a duration with a unit (C(30m)); the rest is left for the next run
        (RV(left_for_next_run)). Unset for no limit; otherwise C(1s) to 10 years.
      - Called C(max_runtime) (seconds) before 1.0.0.
    type: str
  lock_timeout:
    description:
      - C(lock_timeout) of the session, a duration with a unit (C(500ms), C(1s)). It bounds how long a batch waits
        for a row another session holds; that batch then runs again skipping locked rows (C(SKIP LOCKED)). A batch
        that still times out (a table lock held elsewhere) is retried with backoff and a smaller size.
      - A number without a unit is refused.
    type: str
    default: 1s
  statement_timeout:
    description:
      - C(statement_timeout) of the session, a duration with a unit (not applied to copying a detached partition).
      - A number without a unit is refused.
    type: str
    default: 60s
  lock_retries:
    description: Retries of a batch that hit a lock or statement timeout, a deadlock or a serialization failure.
    type: int
    default: 5
  partition_mode:
    description:
      - C(detach) moves partitions whose upper bound is at or before the cutoff whole with C(DETACH PARTITION
        CONCURRENTLY) (plain C(DETACH) under O(lock_timeout) when a default partition exists). The detached table is
        attached to O(archive_table) when that is partitioned with a free range, else copied into it in one
        transaction and dropped; when purging it is dropped. An interrupted detach is finalized on the next run.
      - C(batch) batches every partition like a plain table.
    type: str
    choices: [detach, batch]
    default: detach
  strategy:
    description:
      - C(block) walks the heap in physical block ranges (PostgreSQL 14+), reading every page once in order;
        C(index) batches in timestamp order through the index, reading one random page per due row.
      - C(auto) picks C(index) for a table (or partition) where the planner expects fewer due rows than a quarter
        of its pages, else C(block) (always C(index) before PostgreSQL 14).
    type: str
    choices: [auto, block, index]
    default: auto
notes:
  - The archive must not already hold a row the source still has under a unique key; such a batch fails and
    is rolled back, the task fails naming the key, and RV(left_for_next_run) counts the due rows still in the source.
  - The role needs C(DELETE) on the source, C(INSERT) on the archive, and ownership of the source for partition moves.
'''

EXAMPLES = r'''
- name: Archive enrichment logs older than 90 days (runbook 3.1 step 3, without losing rows)
  cerniq.ops.pg_archive:
    login_db: cerniq_db
    source_table: silver_enrichment_log
    archive_table: silver_enrichment_log_archive
    create_archive: true
    older_than: 90 days

- name: Purge promoted bronze contacts older than 30 days (runbook 3.1 step 2)
  cerniq.ops.pg_archive:
    login_db: cerniq_db
    source_table: bronze_contacts
    older_than: 30 days
    where: processing_status = 'promoted'
    time_budget: 30m

- name: Count what would move
  cerniq.ops.pg_archive:
    login_db: cerniq_db
    source_table: silver_enrichment_log
    archive_table: silver_enrichment_log_archive
    cutoff: '2026-01-01T00:00:00+00:00'
  check_mode: true
  register: due
'''

RETURN = r'''
cutoff:
  description: The cutoff used (ISO 8601); rows strictly older moved.
  returned: success
  type: str
  sample: '2026-08-31T18:00:00.123456+00:00'
mode:
  description: C(archive) or C(purge).
  returned: always
  type: str
moved:
  description:
    - Rows moved (or deleted when purging), including rows of partitions moved whole. In check mode, the rows
      that would move.
    - Called C(rows_moved) before 1.0.0 (and C(would_move) or C(rows_due) in check mode).
  returned: success
  type: int
moved_in_batches:
  description: Rows moved by batches (C(rows_batched) before 1.0.0).
  returned: success
  type: int
moved_in_partitions:
  description: Rows of the partitions moved whole (C(rows_in_partitions) before 1.0.0).
  returned: success
  type: int
partitions_moved:
  description: Partitions moved whole, each with C(partition), C(rows) and C(how).
  returned: success
  type: list
  elements: dict
partitions_to_move:
  description: In check mode, the partitions that would be moved whole.
  returned: check mode
  type: list
  elements: str
batches:
  description: Number of batch statements.
  returned: success
  type: int
worst_batch_ms:
  description: Longest batch transaction in milliseconds.
  returned: success
  type: float
median_batch_ms:
  description: Median batch transaction in milliseconds.
  returned: success
  type: float
elapsed_seconds:
  description: Seconds the run took (C(elapsed_s) before 1.0.0).
  returned: success
  type: float
left_for_next_run:
  description:
    - Due rows still in the source at the end (locked by other sessions, made due during the run, or left by
      O(time_budget)). A later run moves them.
    - Also returned when a run fails part-way (null if they could not be counted).
  returned: always
  type: int
delete_side_effects:
  description:
    - What deleting from the source also changes - C(foreign_keys) (C(name), C(table), C(references),
      C(on_delete)) referencing it with CASCADE, SET NULL or SET DEFAULT, enabled DELETE C(triggers) (C(name),
      C(table), C(timing), C(level)) and DELETE C(rules) (C(name), C(table)).
    - Returned in check mode and when the run is refused because of them.
  returned: always
  type: dict
  sample: {foreign_keys: [{name: escalations_task_fk, table: approval_task_escalations, references: approval_tasks,
           on_delete: CASCADE}], triggers: [], rules: []}
final_check_ms:
  description:
    - Time of the read-only counts of the rows left after the batches (in block ranges after a block pass);
      not write transactions, so not in RV(worst_batch_ms).
  returned: success
  type: float
worst_check_ms:
  description: Longest of those read-only count statements, in milliseconds.
  returned: success
  type: float
batches_skipping_locked_rows:
  description: Batches that met a row held by another session and were run again with C(SKIP LOCKED).
  returned: success
  type: int
passes:
  description: Passes over the source's tables (a second block pass when due rows were left after the first).
  returned: success
  type: int
source_table:
  description: The source table, schema-qualified.
  returned: when it exists
  type: str
archive_table:
  description: The archive table, schema-qualified (null when purging).
  returned: always
  type: str
stopped_by_time_budget:
  description: Whether O(time_budget) ended the run early (C(stopped_by_max_runtime) before 1.0.0).
  returned: success
  type: bool
archive_created:
  description: Whether the archive table was created (in check mode, would be).
  returned: success
  type: bool
strategy:
  description: Batching strategy used (C(block), C(index), or C(block+index) when partitions differed).
  returned: success
  type: str
recovered:
  description: Leftovers of an interrupted run that were finished (finalized detaches, orphaned partitions).
  returned: success
  type: list
  elements: str
warnings_list:
  description: Notes about the run (skipped rows, partitions batched instead of moved).
  returned: success
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec,
    postgres_connect_module,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_archive import (
    DEFAULTS,
    ArchiveError,
    check_options,
    run_archive,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        source_table=dict(type='str', required=True),
        archive_table=dict(type='str'),
        create_archive=dict(type='bool', default=False),
        allow_delete_side_effects=dict(type='bool', default=False),
        timestamp_column=dict(type='str', default='created_at'),
        older_than=dict(type='str'),
        cutoff=dict(type='str'),
        where=dict(type='str'),
        batch_size=dict(type='int', default=5000),
        min_batch_size=dict(type='int', default=100),
        max_batch_size=dict(type='int', default=100000),
        target_batch_time=dict(type='str', default='200ms'),
        time_budget=dict(type='str'),
        lock_timeout=dict(type='str', default='1s'),
        statement_timeout=dict(type='str', default='60s'),
        lock_retries=dict(type='int', default=5),
        partition_mode=dict(type='str', default='detach', choices=['detach', 'batch']),
        strategy=dict(type='str', default='auto', choices=['auto', 'block', 'index']),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('older_than', 'cutoff')],
                           required_one_of=[('older_than', 'cutoff')])
    options = dict((name, module.params[name]) for name in DEFAULTS)
    options['source_table'] = module.params['source_table']
    try:
        check_options(**options)  # every refusal that needs no server, before connecting
    except ArchiveError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        result = run_archive(conn, check_mode=module.check_mode, want_diff=module._diff, **options)
    except ArchiveError as error:
        error.result.pop('diff', None)
        fail_engine_error(module, error, warnings_list=error.result.pop('warnings', []))
    finally:
        conn.close()
    result['warnings_list'] = result.pop('warnings')
    for note in result['warnings_list']:
        module.warn(note)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
