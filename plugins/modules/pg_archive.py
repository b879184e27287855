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
    toward O(target_batch_ms); a final sweep in timestamp order picks up rows that concurrent updates
    moved into blocks already passed. Rows locked by other sessions are skipped and counted in
    RV(left_for_next_run).
  - For a source RANGE-partitioned on O(timestamp_column), partitions entirely older than the cutoff are
    detached concurrently and moved whole (see O(partition_mode)); only partitions with newer rows are batched.
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
  timestamp_column:
    description: Column compared with the cutoff (C(timestamptz), C(timestamp) or C(date)).
    type: str
    default: created_at
  older_than:
    description: Interval such as C(90 days); the cutoff is the server's current time minus this interval. Exclusive with O(cutoff).
    type: str
  cutoff:
    description: An explicit cutoff timestamp; rows with O(timestamp_column) strictly before it move.
    type: str
  where:
    description:
      - An extra SQL condition rows must also meet, for example C(processing_status = 'promoted').
      - It is trusted SQL written by the playbook author and inserted into the statements as is; never build
        it from user data. A C(;) outside quotes is refused.
      - When set, old partitions are batched rather than moved whole.
    type: str
  batch_size:
    description: Initial rows per batch; adapts toward O(target_batch_ms) between O(min_batch_size) and O(max_batch_size).
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
  target_batch_ms:
    description: Transaction time each batch aims for, in milliseconds.
    type: int
    default: 200
  max_runtime:
    description: Seconds after which no new batch starts; the rest is left for the next run (RV(left_for_next_run)).
    type: float
  lock_timeout:
    description: C(lock_timeout) of the session; a batch that times out is retried with backoff and a smaller size.
    type: str
    default: 1s
  statement_timeout:
    description: C(statement_timeout) of the session (not applied to copying a detached partition).
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
    is rolled back, nothing moves.
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
    max_runtime: 1800

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
rows_moved:
  description: Rows moved (or deleted), including rows of partitions moved whole.
  returned: success
  type: int
rows_batched:
  description: Rows moved by batches.
  returned: success
  type: int
rows_in_partitions:
  description: Rows of the partitions moved whole.
  returned: success
  type: int
partitions_moved:
  description: Partitions moved whole, each with C(partition), C(rows) and C(how).
  returned: success
  type: list
  elements: dict
would_move:
  description: In check mode, the rows that would move.
  returned: check mode
  type: int
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
elapsed_s:
  description: Seconds the run took.
  returned: success
  type: float
left_for_next_run:
  description:
    - Due rows still in the source at the end (locked by other sessions, made due during the run, or left by
      O(max_runtime)). A later run moves them.
  returned: success
  type: int
final_check_ms:
  description:
    - Time of the read-only check after the block pass (it walks the index entries of the rows just moved);
      not a write transaction, so not in RV(worst_batch_ms).
  returned: success
  type: float
stopped_by_max_runtime:
  description: Whether O(max_runtime) ended the run early.
  returned: success
  type: bool
archive_created:
  description: Whether the archive table was created.
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

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec,
    postgres_connect_module,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_archive import ArchiveError, run_archive


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        source_table=dict(type='str', required=True),
        archive_table=dict(type='str'),
        create_archive=dict(type='bool', default=False),
        timestamp_column=dict(type='str', default='created_at'),
        older_than=dict(type='str'),
        cutoff=dict(type='str'),
        where=dict(type='str'),
        batch_size=dict(type='int', default=5000),
        min_batch_size=dict(type='int', default=100),
        max_batch_size=dict(type='int', default=100000),
        target_batch_ms=dict(type='int', default=200),
        max_runtime=dict(type='float'),
        lock_timeout=dict(type='str', default='1s'),
        statement_timeout=dict(type='str', default='60s'),
        lock_retries=dict(type='int', default=5),
        partition_mode=dict(type='str', default='detach', choices=['detach', 'batch']),
        strategy=dict(type='str', default='auto', choices=['auto', 'block', 'index']),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('older_than', 'cutoff')],
                           required_one_of=[('older_than', 'cutoff')])
    p = module.params
    if p['batch_size'] < 1 or p['min_batch_size'] < 1 or p['max_batch_size'] < p['min_batch_size']:
        module.fail_json(msg='batch sizes must be positive and min_batch_size <= max_batch_size')
    options = dict((name, p[name]) for name in (
        'source_table', 'archive_table', 'create_archive', 'timestamp_column', 'older_than', 'cutoff', 'where',
        'batch_size', 'min_batch_size', 'max_batch_size', 'target_batch_ms', 'max_runtime', 'lock_timeout',
        'statement_timeout', 'lock_retries', 'partition_mode', 'strategy'))
    conn = postgres_connect_module(module)
    try:
        result = run_archive(conn, check_mode=module.check_mode, want_diff=module._diff, **options)
    except ArchiveError as error:
        partial = dict(error.partial or {})
        partial.pop('warnings', None)
        partial.pop('changed', None)
        module.fail_json(msg=str(error), changed=bool(partial.get('rows_moved')), **partial)
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
