"""Running one hostile example: fresh server state, the real module, the oracle's verdict.

``PgWorkspace`` keeps one template database per kind of data (built once per session) and gives each
example a fresh copy (``CREATE DATABASE ... TEMPLATE``) to corrupt; ``RedisWorkspace`` empties the
server. ``run_example`` snapshots, runs the module (cerniq_testkit/ansible_run.py ``run_module``, a real
module process), snapshots again and returns everything the test needs to judge the run.
"""

import json
import os
import subprocess
import tempfile

import psycopg2

from tests.hostile.oracle import pg_snapshot, redis_snapshot, report, verdict
from cerniq_testkit.ansible_run import run_module

WORK_DB = 'hostile_work'
RUN_TIMEOUT = 120


class PgWorkspace:

    def __init__(self, server):
        self.server = server
        self.templates = set()
        self._conn = None

    def _admin(self):
        conn = psycopg2.connect(**_libpq(self.server.params('postgres', superuser=True)))
        conn.autocommit = True
        return conn

    def template(self, name, build):
        """Create template database ``name`` once, filled by ``build(conn)`` (an app-role connection)."""
        if name not in self.templates:
            admin = self._admin()
            try:
                with admin.cursor() as cur:
                    cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
                    cur.execute('CREATE DATABASE %s OWNER cerniq' % name)
            finally:
                admin.close()
            conn = psycopg2.connect(**_libpq(self.server.params(name)))
            conn.autocommit = True
            try:
                build(conn)
            finally:
                conn.close()
            self.templates.add(name)
        return name

    def fresh(self, template):
        """A new work database copied from ``template``; returns (module params, app-role connection)."""
        self.close_work()
        admin = self._admin()
        try:
            with admin.cursor() as cur:
                cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % WORK_DB)
                cur.execute('CREATE DATABASE %s TEMPLATE %s OWNER cerniq' % (WORK_DB, template))
        finally:
            admin.close()
        params = self.server.params(WORK_DB)
        self._conn = psycopg2.connect(**_libpq(params))
        self._conn.autocommit = True
        return params, self._conn

    def close_work(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self):
        self.close_work()
        admin = self._admin()
        try:
            with admin.cursor() as cur:
                for name in [WORK_DB] + sorted(self.templates):
                    cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
        finally:
            admin.close()


class RedisWorkspace:

    def __init__(self, server):
        self.server = server
        self.client = server.client()

    def fresh(self):
        self.client.flushall()
        return self.server.params(), self.client

    def close(self):
        self.client.flushall()
        self.client.close()


def _libpq(params):
    return dict(host=params['login_host'], port=params['login_port'], dbname=params['login_db'],
                user=params['login_user'], password=params['login_password'])


class Example:
    """One run: its arguments, the state it ran against, the result and the snapshots around it."""

    def __init__(self, module, args, check_mode, state, result, before, after, timed_out, stray_files=()):
        self.module, self.args, self.check_mode, self.state = module, args, check_mode, state
        self.result, self.before, self.after, self.timed_out = result, before, after, timed_out
        self.stray_files = sorted(stray_files)

    @property
    def succeeded(self):
        return not self.timed_out and not self.result.failed

    @property
    def may_have_changed(self):
        """A run the oracle does not require to leave the data as it was."""
        return not self.check_mode and (self.succeeded or bool(self.result.get('changed')))

    def problems(self, invariant=None):
        found = list(verdict(self.module, self.result, self.check_mode, self.before, self.after, self.timed_out,
                             self.args))
        if self.stray_files:
            found.append('wrote into the directory it ran in: %s' % ', '.join(self.stray_files))
        if not found and invariant is not None and self.may_have_changed:
            found = list(invariant(self) or [])
        return found

    def assert_ok(self, invariant=None):
        found = self.problems(invariant)
        assert not found, report(self.module, self.args, self.check_mode, self.state, self.result, found)


class _TimedOut(dict):
    failed = True
    rc = None
    stderr = ''


def run_example(module, args, check_mode, state, snapshot, env=None):
    """Snapshot, run ``module`` with ``args``, snapshot again; returns an ``Example``."""
    before = snapshot()
    # The module runs in an empty directory of its own: no option may make it write there.
    with tempfile.TemporaryDirectory(prefix='cerniq-hostile-cwd-') as cwd:
        previous = os.getcwd()
        os.chdir(cwd)
        try:
            result = run_module(module, args, check_mode=check_mode, env=env, timeout=RUN_TIMEOUT)
            timed_out = False
        except subprocess.TimeoutExpired:
            result, timed_out = _TimedOut(msg='timed out after %ss' % RUN_TIMEOUT), True
        finally:
            os.chdir(previous)
        stray = os.listdir(cwd)
    example = Example(module, args, check_mode, state, result, before, snapshot(), timed_out, stray)
    _trace(example)
    return example


def _trace(example):
    """With CERNIQ_HOSTILE_TRACE=<file>, one JSON line per run (module, outcome, message) for hunt statistics."""
    path = os.environ.get('CERNIQ_HOSTILE_TRACE')
    if path:
        with open(path, 'a') as handle:
            handle.write(json.dumps(dict(module=example.module, check_mode=example.check_mode,
                                         failed=bool(example.result.failed), changed=example.result.get('changed'),
                                         msg=str(example.result.get('msg', ''))[:200], timed_out=example.timed_out),
                                    default=repr) + '\n')


def pg_snapshotter(conn):
    return lambda: pg_snapshot(conn)


def redis_snapshotter(client):
    return lambda: redis_snapshot(client)
