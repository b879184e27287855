"""Runbook 2.1 diagnosis steps 2 and 4 in playbooks/runbook/stuck_import.yml (issue 17 item 6).

Step 2 reads the ingest worker's log: the worker is a real podman container that logs the stuck
import's file and job, and a heartbeat line that must not be shown. Step 4 shows the long-running
queries on bronze tables: a real session of the test runs one in PostgreSQL while the playbook runs.
The journald path (systemd units) is not exercised here: no systemd runs on this machine.
"""

import os
import threading
import time

import psycopg2
import pytest

from cerniq_testkit.ansible_run import REPO, run_playbook
from cerniq_testkit.worker_containers import CONTAINERS_CONF, HAVE_PODMAN, podman, remove, worker_image

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema, synthetic as cerniq_synthetic
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import connect_postgres

PLAYBOOK = os.path.join(REPO, 'playbooks', 'runbook', 'stuck_import.yml')


@pytest.fixture
def stuck(pg_db, redis_client):
    conn = connect_postgres(pg_db)
    try:
        cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
        cerniq_synthetic.load(conn, '26', dict(scale=0.05, tenants=1))
        return cerniq_synthetic.inject(conn, '26', ['stuck_import'], redis_client=redis_client)[
            'incidents']['stuck_import']
    finally:
        conn.close()


@pytest.fixture
def ingest_worker(stuck):
    name = 'cerniq-test-ingest-%d' % os.getpid()
    script = ('echo "worker started"; echo "heartbeat ok"; echo "parsing upload-17.xlsx sheet 1"; '
              'echo "job %s: still waiting for the database" >&2; exec sleep infinity' % stuck['job_ids'][0])
    podman('run', '-d', '--name', name, worker_image(), 'sh', '-c', script)
    yield name
    remove(name)


@pytest.fixture
def bronze_query(pg_db):
    """A query on bronze_contacts that runs in another session until the test cancels it at the end (its
    600 s only bound it: a 30 s query had ended before the diagnosis read it on a loaded machine)."""
    conn = psycopg2.connect(host=pg_db['login_host'], port=pg_db['login_port'], dbname=pg_db['login_db'],
                            user=pg_db['login_user'], password=pg_db['login_password'])
    pid = conn.get_backend_pid()

    def run():
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT count(*) FROM bronze_contacts, pg_sleep(600)')
        except psycopg2.Error:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(2)
    yield pid
    conn.cancel()
    thread.join(10)
    conn.close()


@pytest.mark.skipif(not HAVE_PODMAN, reason='podman not installed')
def test_diagnosis_shows_worker_log_and_bronze_queries(pg_db, redis_params, stuck, ingest_worker, bronze_query):
    extra = dict(cerniq_postgres=pg_db, cerniq_redis=redis_params, cerniq_worker_runtime='podman',
                 cerniq_ingest_worker=ingest_worker, cerniq_stuck_query_seconds=1)
    report = run_playbook(PLAYBOOK, extra_vars=extra, env={'CONTAINERS_CONF': CONTAINERS_CONF})
    assert report.returncode == 0, report.stdout
    out = report.stdout
    assert 'worker log (podman logs --tail 100 %s): 2 line(s) matching' % ingest_worker in out, out
    assert 'parsing upload-17.xlsx sheet 1' in out and 'job %s: still waiting' % stuck['job_ids'][0] in out
    assert 'heartbeat ok' not in out and 'worker started' not in out
    assert '1 bronze quer(ies) active or idle in transaction for more than 1 s' in out, out
    row = [line for line in out.splitlines() if line.strip().startswith('"%d ' % bronze_query)]
    assert row and 'SELECT count(*) FROM bronze_contacts, pg_sleep(600)' in row[0] and ' active ' in row[0], out
    assert 'Report only' in out

    missing = run_playbook(PLAYBOOK, extra_vars=dict(extra, cerniq_ingest_worker='cerniq-no-such-worker-%d'
                                                     % os.getpid()), env={'CONTAINERS_CONF': CONTAINERS_CONF})
    assert missing.returncode == 0, missing.stdout
    assert 'worker log not read (podman logs --tail 100 cerniq-no-such-worker' in missing.stdout, missing.stdout
    assert 'no such container' in missing.stdout.lower()

    unknown = run_playbook(PLAYBOOK, extra_vars=dict(extra, cerniq_worker_runtime='none'))
    assert 'worker log not read: set cerniq_worker_runtime' in unknown.stdout, unknown.stdout
