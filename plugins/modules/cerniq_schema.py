#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cerniq_schema
short_description: Apply the CERNIQ SQL migrations to a PostgreSQL database
description:
  - Applies versioned SQL migrations (C(NNN_description.sql)) in name order and records each one in a
    migrations table, so a second run applies nothing.
  - Each pending migration runs in its own transaction together with its record, under an advisory
    lock; a failing migration is rolled back and named in the error, earlier ones stay applied.
  - A recorded migration whose text changed is refused unless O(allow_changed=true).
  - The migrations of the collection live in C(schema/migrations/); the playbook
    C(cerniq.ops.load_schema) reads them on the controller and passes them in O(migrations).
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
attributes:
  check_mode:
    support: full
    description: Reports the migrations that would be applied; runs no SQL but reads.
  diff_mode:
    support: full
    description: The list of recorded migrations before and after.
options:
  migrations:
    description:
      - The migrations to apply, each with its file O(migrations[].name) and O(migrations[].sql) text.
      - Mutually exclusive with O(path).
    type: list
    elements: dict
    suboptions:
      name:
        description: File name, C(NNN_description.sql); the directory part is ignored.
        type: str
        required: true
      sql:
        description: The SQL text. It must not contain its own C(BEGIN)/C(COMMIT).
        type: str
        required: true
  path:
    description: A directory on the target host holding C(NNN_*.sql) files.
    type: path
  table:
    description: The table that records applied migrations (C([schema.]name)); created when missing.
    type: str
    default: schema_migrations
  allow_changed:
    description: Do not fail when an applied migration's text differs from the recorded checksum.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Apply the migrations shipped with the collection
  cerniq.ops.cerniq_schema:
    login_host: db.internal
    login_db: cerniq_db
    login_user: cerniq
    migrations:
      - name: 001_core_tables.sql
        sql: "{{ lookup('ansible.builtin.file', 'schema/migrations/001_core_tables.sql') }}"

- name: Apply the migrations of a directory present on the target
  cerniq.ops.cerniq_schema:
    login_db: cerniq_db
    path: /opt/cerniq/schema/migrations
'''

RETURN = r'''
applied:
  description: Migrations applied by this run (in check mode, the ones that would be).
  returned: always
  type: list
  elements: str
  sample: [001_core_tables.sql]
already_applied:
  description: Migrations found recorded before this run.
  returned: always
  type: list
  elements: str
pending:
  description: Migrations still not applied after this run (in check mode, before it).
  returned: always
  type: list
  elements: str
changed_checksum:
  description: Recorded migrations whose text changed (only without failure when O(allow_changed=true)).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.schema import (
    MigrationError, apply, load_migrations_dir, normalize_migrations)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        migrations=dict(type='list', elements='dict', options=dict(
            name=dict(type='str', required=True),
            sql=dict(type='str', required=True),
        )),
        path=dict(type='path'),
        table=dict(type='str', default='schema_migrations'),
        allow_changed=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('migrations', 'path')],
                           required_one_of=[('migrations', 'path')])
    try:
        if module.params['path']:
            migrations = load_migrations_dir(module.params['path'])
        else:
            migrations = normalize_migrations(module.params['migrations'])
    except MigrationError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        result = apply(conn, migrations, table=module.params['table'], check_mode=module.check_mode,
                       allow_changed=module.params['allow_changed'])
    except ValueError as error:
        module.fail_json(msg='invalid table name: %s' % error)
    except MigrationError as error:
        fail_engine_error(module, error)
    finally:
        conn.close()
    before = sorted(result['already_applied'])
    result['diff'] = dict(before='\n'.join(before) + '\n',
                          after='\n'.join(sorted(before + result['applied'])) + '\n')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
