# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - Falls back to the E(PGHOST) environment variable, then to the local socket.
    type: str
    aliases: [db_host]
  login_port:
    description: TCP port of the PostgreSQL server (E(PGPORT) when unset, else 5432).
    type: int
    aliases: [db_port]
  login_unix_socket:
    description: Directory of the server's Unix socket; used instead of O(login_host) when set.
    type: str
    aliases: [db_unix_socket]
  login_db:
    description: Database to connect to (E(PGDATABASE) when unset).
    type: str
    aliases: [db, database]
  login_user:
    description: Role to connect as (E(PGUSER) when unset).
    type: str
    aliases: [db_user]
  login_password:
    description:
      - Password of O(login_user) (E(PGPASSWORD) when unset). Never logged.
      - Prefer a C(~/.pgpass) file or E(PGPASSFILE) for scheduled jobs.
    type: str
    aliases: [db_password]
  ssl_mode:
    description: libpq C(sslmode) (E(PGSSLMODE) when unset).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ssl_rootcert:
    description: CA certificate file used to verify the server (E(PGSSLROOTCERT)).
    type: path
    aliases: [ca_cert]
  ssl_cert:
    description: Client certificate file (E(PGSSLCERT)).
    type: path
  ssl_key:
    description: Client private key file (E(PGSSLKEY)).
    type: path
  connect_timeout:
    description:
      - How long to wait for the connection before failing with a clear error, a duration with a unit
        (C(10s), C(1m)); from C(1s) to C(1h), rounded up to whole seconds. A number without a unit is refused.
    type: str
    default: 10s
  application_name:
    description: C(application_name) shown in C(pg_stat_activity) for this session.
    type: str
    default: cerniq.ops
requirements:
  - psycopg2 (or psycopg2-binary) on the host that runs the module
notes:
  - An unreachable server, a failed authentication or a missing database ends the task with a one-line
    message naming the server and the cause; the password never appears in it.
  - All PostgreSQL modules of the collection take these options; set them once with
    C(module_defaults) and the action group C(group/cerniq.ops.postgres).
'''
