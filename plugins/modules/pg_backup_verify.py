#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pg_backup_verify
short_description: Verify that the newest PostgreSQL backup exists, is recent and restores
description:
  - Implements runbook 3.2 step 5 (the C(/scripts/verify-backups.sh) the runbook names but never defines).
  - Finds the newest backup (a dump file, a directory-format dump, the newest entry of a directory, or the newest
    path printed by a listing command), checks its age, and reads it as a dump - C(pg_restore --list) for custom,
    directory and tar formats, the C(PostgreSQL database dump complete) trailer for plain SQL (also gzip-compressed).
  - With O(restore=true) it restores the backup into a scratch database on the server given by the connection
    options, compares the row counts of O(tables) with the source database, and drops the scratch database.
  - Optionally writes the result as node_exporter textfile metrics (atomically) - C(cerniq_backup_verify_success),
    C(cerniq_backup_verify_check{check}), C(cerniq_backup_verify_timestamp_seconds) and more - which the collection's
    alert rules (C(BackupStale), C(BackupUnreadable), C(BackupRestoreFailed), C(BackupVerificationOverdue),
    C(BackupVerificationMissing)) watch.
  - The module fails when verification fails, after writing the metrics, unless O(fail_on_problem=false).
version_added: 0.1.0
author:
  - cerniq.ops contributors (@cerniq-ops)
extends_documentation_fragment:
  - cerniq.ops.postgres
attributes:
  check_mode:
    support: full
    description: In check mode the read-only checks run; no scratch restore and no metrics file are written.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to compare.
options:
  path:
    description:
      - A backup file, a directory-format dump, or a directory holding backups (the newest entry matching
        O(pattern) is checked).
      - One of O(path) and O(list_command) is required.
    type: path
  pattern:
    description: Shell-style pattern of backup entries when O(path) is a directory of backups.
    type: str
    default: '*'
  list_command:
    description:
      - A command (no shell) printing backup paths one per line, for example a wrapper around a backup tool;
        the newest existing path is checked.
    type: str
  max_age:
    description:
      - Maximum age of the newest backup, a duration with a unit (C(26h), C(2 days)); older is a problem.
        Unset - the age is not checked. At least C(1s).
      - A number of hours before 1.0.0; a number without a unit is refused.
    type: str
  restore:
    description: Restore the backup into a scratch database and compare row counts of O(tables).
    type: bool
    default: false
  tables:
    description: Tables (C(schema.name) or C(name)) whose row counts are compared after a restore.
    type: list
    elements: str
    default: []
  scratch_db:
    description: Name of the temporary database for the restore check; the module refuses to use an existing one.
    type: str
    default: cerniq_restore_check
  row_count_tolerance:
    description: Allowed difference between backup and source row counts, in percent of the source count.
    type: float
    default: 10.0
  textfile_path:
    description: Write metrics to this file, an absolute path ending in C(.prom) in the node_exporter textfile collector directory.
    type: path
  metrics_task:
    description: Value of the C(task) label of the metrics (not C(job), which is the scrape job's label).
    type: str
    default: backup
  fail_on_problem:
    description: Fail the task when verification finds a problem.
    type: bool
    default: true
  pg_restore_path:
    description: The C(pg_restore) program.
    type: path
    default: pg_restore
  psql_path:
    description: The C(psql) program (restore check of plain SQL dumps).
    type: path
    default: psql
notes:
  - The password reaches C(pg_restore) and C(psql) through the environment, never their command line.
  - The task reports C(changed=false); the metrics file is monitoring output, rewritten on every run.
seealso:
  - module: cerniq.ops.pg_maintenance
'''

EXAMPLES = r'''
- name: Check last night's dump and restore it into a scratch database
  cerniq.ops.pg_backup_verify:
    path: /var/backups/postgresql
    pattern: 'cerniq_db-*.dump'
    max_age: 26h
    restore: true
    tables: [bronze_contacts, silver_companies, approval_tasks]
    login_user: postgres
    login_db: cerniq_db
    textfile_path: /var/lib/prometheus/node-exporter/cerniq_backup.prom

- name: Only check that the newest backup is recent and readable
  cerniq.ops.pg_backup_verify:
    list_command: /usr/local/bin/list-backups --format paths
    max_age: 26h
'''

RETURN = r'''
backup:
  description: Path of the newest backup that was checked.
  returned: always
  type: str
format:
  description: Dump format detected (custom, directory, tar, plain, plain-gzip).
  returned: always
  type: str
age_seconds:
  description: Age of the newest backup.
  returned: always
  type: int
size_bytes:
  description: Size of the backup (sum of files for a directory dump).
  returned: always
  type: int
entries:
  description: Number of archive entries listed by C(pg_restore --list) (null for plain SQL).
  returned: always
  type: int
restored:
  description: Whether the scratch restore succeeded.
  returned: always
  type: bool
row_counts:
  description: Per table, rows in the restored backup and in the source.
  returned: always
  type: dict
  sample: {bronze_contacts: {backup: 1000, source: 1012}}
checks:
  description:
    - Outcome of each check that ran - C(found) (a backup exists), C(fresh) (not older than O(max_age)),
      C(readable) (listed or complete), C(restored) (restored and row counts within the tolerance). Also written as
      C(cerniq_backup_verify_check{check=...}) to O(textfile_path); the alert rules name the one that failed.
  returned: always
  type: dict
  sample: {found: true, fresh: true, readable: true, restored: true}
verified:
  description: Whether every check passed.
  returned: always
  type: bool
problems:
  description: What failed, one line each.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option
from ansible_collections.cerniq.ops.plugins.module_utils.pg_backup import (
    BackupError,
    backup_metrics,
    verify_backup,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    PostgresConnectError,
    postgres_argument_spec,
)
from ansible_collections.cerniq.ops.plugins.module_utils.textfile_metrics import read_sample, write_metrics


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        path=dict(type='path'),
        pattern=dict(type='str', default='*'),
        list_command=dict(type='str'),
        max_age=dict(type='str'),
        restore=dict(type='bool', default=False),
        tables=dict(type='list', elements='str', default=[]),
        scratch_db=dict(type='str', default='cerniq_restore_check'),
        row_count_tolerance=dict(type='float', default=10.0),
        textfile_path=dict(type='path'),
        metrics_task=dict(type='str', default='backup'),
        fail_on_problem=dict(type='bool', default=True),
        pg_restore_path=dict(type='path', default='pg_restore'),
        psql_path=dict(type='path', default='psql'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[('path', 'list_command')],
                           mutually_exclusive=[('path', 'list_command')])
    p = module.params
    restore = p['restore'] and not module.check_mode
    if restore and not HAS_PSYCOPG2:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib('psycopg2 (or psycopg2-binary)'), exception=PSYCOPG2_IMPORT_ERROR)
    if p['textfile_path'] and not (os.path.isabs(p['textfile_path']) and p['textfile_path'].endswith('.prom')):
        module.fail_json(msg='textfile_path must be an absolute path ending in .prom (the files node_exporter\'s '
                             'textfile collector reads), got %r' % p['textfile_path'])
    if p['textfile_path'] and not os.path.isdir(os.path.dirname(os.path.abspath(p['textfile_path']))):
        module.fail_json(msg='directory of textfile_path %s does not exist' % p['textfile_path'])
    try:
        max_age = duration_option(p['max_age'], 'max_age', 1, optional=True)
    except DurationError as error:
        module.fail_json(msg=str(error))
    try:
        result = verify_backup(
            path=p['path'], pattern=p['pattern'], list_command=p['list_command'], max_age_seconds=max_age,
            restore=restore, params=p, tables=p['tables'], scratch_db=p['scratch_db'],
            tolerance_percent=p['row_count_tolerance'], pg_restore=p['pg_restore_path'], psql=p['psql_path'])
    except (BackupError, PostgresConnectError) as error:
        result = dict(backup=None, verified=False, problems=[str(error)], mtime=None, checks={})
    if p['textfile_path'] and not module.check_mode:
        previous = read_sample(p['textfile_path'], 'cerniq_backup_last_success_timestamp_seconds')
        write_metrics(p['textfile_path'], backup_metrics(result, task=p['metrics_task'], previous_success=previous))
    result.pop('mtime', None)
    if not result['verified'] and p['fail_on_problem']:
        module.fail_json(msg='backup verification failed: %s' % '; '.join(result['problems']), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
