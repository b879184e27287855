"""The maintenance, report, queue and setup playbooks as AWX runs them (see test_runbooks.py).

Each shipped playbook runs through its wrapper in the example AWX project, under ansible-runner
(pseudo-terminal), with the collection installed from the tarball; none may wait for input or
show a secret. Reports and maintenance end with a summary and set_stats artifacts; failures name
the host and the cause.
"""

import datetime
import os

from cerniq_testkit.monitoring import PrometheusServer


def test_load_schema_and_lab_seed_on_an_empty_database(job, cerniq_db):
    schema = job('load_schema.yml', cerniq_db.connections())
    assert schema.status == 'successful', schema
    assert schema.changed('Apply pending migrations in name order')
    assert schema.artifacts['cerniq_load_schema']['applied'] == sorted(
        name for name in os.listdir(os.path.join(os.path.dirname(__file__), '..', '..', 'schema', 'migrations'))
        if name[0].isdigit())
    seeded = job('lab_seed.yml', cerniq_db.connections(),
                 extravars={'cerniq_lab_scale': 0.05, 'cerniq_lab_tenants': 1, 'cerniq_lab_incidents': ['sla_breach']})
    assert seeded.status == 'successful', seeded
    assert seeded.artifacts['cerniq_lab_seed']['injected'] == ['sla_breach']
    assert cerniq_db.query('SELECT count(*) FROM approval_tasks WHERE due_at < now()')[0] > 0


def test_daily_maintenance_with_and_without_redis_cleanup(job, cerniq_db):
    cerniq_db.load().inject(['retention_due'])
    plain = job('daily_maintenance.yml', cerniq_db.connections(redis=False))
    assert plain.status == 'successful', plain
    stats = plain.artifacts['cerniq_daily_maintenance']
    assert stats['failed_steps'] == [] and stats['archived_rows'] > 0 and stats['redis_keys_deleted'] == 0
    assert '(skipped: cerniq_redis is not set)' in plain.stdout
    assert plain.changed('Archive enrichment log rows older than 90 days')

    cerniq_db.redis.mset({'cache:company:%d' % n: 'x' for n in range(25)})
    cerniq_db.redis.set('bull:keep:me', 'x')
    # Runbook 3.1 step 4 by default once Redis is configured (cerniq_redis_cleanup_enabled: true).
    cleaned = job('daily_maintenance.yml', cerniq_db.connections())
    assert cleaned.status == 'successful', cleaned
    assert cleaned.changed('Delete expired Redis cache keys')
    assert cleaned.artifacts['cerniq_daily_maintenance']['redis_keys_deleted'] == 25
    assert cerniq_db.redis.keys('cache:*') == [] and cerniq_db.redis.exists('bull:keep:me')


def test_daily_maintenance_failure_names_host_and_cause_without_the_password(job, cerniq_db, services):
    """The password comes as an extra-vars credential here; the database refuses the connection."""
    connections = cerniq_db.connections(redis=False)
    failing = job('daily_maintenance.yml', connections, extravars={
        'cerniq_postgres': dict(connections['cerniq_postgres'], login_db='no_such_db',
                                login_password=services.pg_password)})
    assert failing.status == 'failed'
    [(host, message)] = failing.failures()
    assert host == 'localhost'
    assert message.startswith('localhost: daily maintenance step(s) failed - vacuum (bronze_contacts, ')
    assert 'no_such_db' in message and 'archive: cannot connect to PostgreSQL' in message


def test_weekly_maintenance_and_index_report(job, cerniq_db):
    cerniq_db.load()
    # No backup location on this machine: say so (the run refuses to pretend otherwise).
    weekly = job('weekly_maintenance.yml', cerniq_db.connections(redis=False), extravars={'cerniq_backup_verify': False})
    assert weekly.status == 'successful', weekly
    stats = weekly.artifacts['cerniq_weekly_maintenance']
    assert stats['failed_steps'] == [] and 'silver_companies' in ' '.join(stats['analyzed'])
    assert weekly.changed('ANALYZE every table of the database')
    report = job('index_report.yml', cerniq_db.connections(redis=False))
    assert report.status == 'successful', report
    assert '### Reindex candidates' in report.stdout
    assert report.artifacts['cerniq_index_report']['database'] == cerniq_db.database


def test_capacity_report_with_and_without_redis(job, cerniq_db, services):
    """Facts are gathered here: the credential's environment variables must not reach the job events."""
    cerniq_db.load().inject(['stuck_import'])
    for redis in (False, True):
        report = job('capacity_report.yml', cerniq_db.connections(redis=redis))
        assert report.status == 'successful', report
        stats = report.artifacts['cerniq_capacity_report']
        assert stats['files'][0] == os.path.join(services.report_dir, 'capacity.md') and isinstance(stats['exceeded'], list)
        assert os.path.exists(stats['files'][0]) and os.path.exists(stats['files'][1])


def test_incident_report_from_prometheus(job, cerniq_db):
    cerniq_db.load()
    start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')
    with PrometheusServer() as prometheus:
        report = job('incident_report.yml', dict(cerniq_db.connections(redis=False), cerniq_prometheus_url=prometheus.url,
                                                 cerniq_alertmanager_url=''),
                     extravars={'cerniq_incident_id': 'INC-AWX-1', 'cerniq_incident_start': start})
    assert report.status == 'successful', report
    assert '# Incident Report: INC-AWX-1' in report.stdout
    assert report.artifacts['cerniq_incident_report']['incident_id'] == 'INC-AWX-1'


def test_diagnose_and_repair_queues(job, cerniq_db):
    empty = job('repair_queues.yml', cerniq_db.connections(), extravars={'cerniq_confirm': True})
    assert empty.status == 'successful', empty      # no queue exists yet: nothing to repair (used to crash)
    assert 'no queue to repair' in empty.stdout and empty.artifacts['cerniq_repair_queues']['moved'] == {}

    cerniq_db.load().inject(['stuck_import'])
    diagnosis = job('diagnose_queues.yml', cerniq_db.connections())
    assert diagnosis.status == 'successful', diagnosis
    stats = diagnosis.artifacts['cerniq_diagnose_queues']
    assert stats['queues']['bronze:ingest:csv']['verdict'] == 'STALLED' and stats['queues']['bronze:ingest:csv']['stalled'] == 1

    dry = job('repair_queues.yml', cerniq_db.connections())
    assert dry.status == 'successful', dry
    assert 'DRY RUN (nothing is written): re-run with -e cerniq_repair_confirm=true' in dry.stdout
    assert cerniq_db.redis.llen('bull:bronze:ingest:csv:active') == 1
    assert dry.artifacts['cerniq_repair_queues']['applied'] is False

    done = job('repair_queues.yml', cerniq_db.connections(), extravars={'cerniq_confirm': True})
    assert done.status == 'successful', done
    assert done.changed('Move stalled jobs back to waiting')
    assert cerniq_db.redis.llen('bull:bronze:ingest:csv:active') == 0
    stats = done.artifacts['cerniq_repair_queues']
    assert stats['applied'] is True and stats['moved']['bronze:ingest:csv'] == 1 and stats['stalled_after'] == 0


def test_queue_playbooks_without_redis_fail_naming_the_setting(job, cerniq_db):
    done = job('diagnose_queues.yml', cerniq_db.connections(redis=False))
    assert done.status == 'failed'
    assert done.failures() == [('localhost', 'localhost: cerniq_redis is not set: the queues live in Redis '
                                             '(cerniq_redis: {redis_host: ...})')]


def test_site_with_the_project_inventory_has_nothing_to_configure(job, cerniq_db):
    """site.yml configures hosts by group (cerniq_database, ...); the AWX project's inventory has none."""
    done = job('site.yml', cerniq_db.connections())
    assert done.status == 'successful', done
    assert 'skipping: no hosts matched' in done.stdout
