"""Verify cerniq.ops.maintenance (+ logrotate, node_exporter) on the database host.

Loads rows around the retention boundaries and cache keys, forces a daily run through systemd,
then checks the data, the metrics, the log, the lock and the logrotate configuration; then a
nightly dump and the weekly job restoring it.
"""

import pytest

from test_postgresql import PASSWORD

RUNNER = "/opt/cerniq-maintenance/bin/cerniq-maintenance"
CONFIG = "/etc/cerniq/maintenance/daily.json"
PROM = "/var/lib/prometheus/node-exporter/cerniq_maintenance_daily.prom"
LOG = "/var/log/cerniq/maintenance-daily.log"
# This file's rows, apart from the other tests' (tenant, company).
OWN = "00000000-0000-0000-0000-000000000001"
DATA = """
-- 60 contacts, one per day back; even days promoted. Due for purge: promoted and older
-- than 30 days = days 32, 34 .. 60 = 15 rows.
INSERT INTO bronze_contacts (tenant_id, processing_status, created_at)
SELECT '{own}', CASE WHEN g % 2 = 0 THEN 'promoted' ELSE 'pending' END,
       now() - (g || ' days')::interval + interval '12 hours'
FROM generate_series(1, 60) g;
-- 120 log rows, one per day back. Due for archiving: older than 90 days = 30 rows.
INSERT INTO silver_enrichment_log (company_id, source, status, duration_ms, created_at)
SELECT '{own}', 'anaf', 'success', 10, now() - (g || ' days')::interval + interval '12 hours'
FROM generate_series(1, 120) g;
""".format(own=OWN)


def sql(host, query):
    return host.check_output("sudo -u postgres psql -X -tAc %s cerniq_db", query)


@pytest.fixture(scope="module", autouse=True)
def due_for_maintenance(host):
    """Rows and keys due for the daily job; CREATEDB for the weekly job's scratch restore while
    this file runs (maintenance_backup_restore needs it; the postgresql role does not grant it)."""
    host.run_test("sudo -u postgres psql -X -v ON_ERROR_STOP=1 -q -d cerniq_db -c %s", DATA)
    host.run_test("for i in $(seq 1 40); do redis-cli SET cache:company:$i x >/dev/null; done")
    host.run_test("redis-cli SET 'session:expired:a b' x && redis-cli SET session:live:1 keep")
    sql(host, "ALTER ROLE cerniq CREATEDB")
    yield
    sql(host, "ALTER ROLE cerniq NOCREATEDB")


def test_files_users_and_permissions(host):
    user = host.user("cerniq-maint")
    assert user.shell == "/usr/sbin/nologin"
    credentials = host.file("/etc/cerniq/maintenance/credentials")
    assert credentials.mode == 0o600 and credentials.user == "cerniq-maint"
    assert "ecule pa$$" not in host.file(CONFIG).content_string
    assert host.file(CONFIG).mode == 0o640
    assert host.file(RUNNER).mode == 0o755
    timer = host.service("cerniq-maintenance-daily.timer")
    assert timer.is_enabled and timer.is_running
    assert host.service("cerniq-maintenance-weekly.timer").is_enabled
    assert host.service("cerniq-maintenance-backup.timer").is_enabled
    backups = host.file("/var/backups/cerniq")
    assert backups.is_directory and backups.user == "cerniq-maint" and backups.mode == 0o750
    assert not host.file("/etc/cron.d/cerniq-maintenance").exists


def test_forced_daily_run_archives_purges_and_cleans(host):
    host.run_test("systemctl start cerniq-maintenance@daily.service")
    result = host.run("systemctl show -p Result --value cerniq-maintenance@daily.service")
    assert result.stdout.strip() == "success", host.file(LOG).content_string
    assert sql(host, "SELECT count(*) FROM bronze_contacts WHERE tenant_id = '%s'" % OWN) == "45"
    assert sql(host, "SELECT count(*) FROM silver_enrichment_log_archive WHERE company_id = '%s'" % OWN) == "30"
    assert sql(host, "SELECT count(*) FROM silver_enrichment_log WHERE company_id = '%s'" % OWN) == "90"
    keys = host.check_output("redis-cli --scan --pattern '*'").split()
    assert keys == ["session:live:1"]


def test_metrics_and_log(host):
    metrics = host.file(PROM)
    assert metrics.exists and metrics.user == "cerniq-maint"
    text = metrics.content_string
    assert 'cerniq_maintenance_exit_status{task="daily"} 0' in text
    assert 'cerniq_maintenance_rows_archived{task="daily"} 30' in text
    assert 'cerniq_maintenance_rows_purged{task="daily"} 15' in text
    assert 'cerniq_maintenance_keys_deleted{task="daily"} 41' in text
    scrape = host.check_output("python3 -c \"import urllib.request;"
                               "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())\"")
    assert 'cerniq_maintenance_last_success_timestamp_seconds{task="daily"}' in scrape
    log = host.file(LOG).content_string
    assert "step archive_enrichment_log: ok" in log and "end: success" in log
    assert "ecule pa$$" not in log and PASSWORD not in log


def test_second_run_during_the_first_does_nothing(host):
    out = host.check_output(
        "flock /var/lib/cerniq-maintenance/daily.lock "
        "sudo -u cerniq-maint %s --config %s", RUNNER, CONFIG)
    assert "holds the lock" in out and "exiting without doing anything" in out


def test_logrotate_dry_run(host):
    result = host.run("logrotate -d /etc/logrotate.d/cerniq-maintenance")
    assert result.rc == 0, result.stderr
    assert "maintenance-*.log" in result.stderr or "maintenance-*.log" in result.stdout


def test_nightly_dump_then_weekly_verification_restores_it_and_analyzes_the_database(host):
    """Runbook 3.2 steps 3 and 5 on the host: the sandboxed units dump, verify, restore, ANALYZE."""
    host.run_test("systemctl start cerniq-maintenance@backup.service")
    dumps = host.check_output("ls /var/backups/cerniq").split()
    assert len(dumps) >= 1 and all(name.startswith("cerniq_db-") and name.endswith("Z.dump") for name in dumps)
    host.run_test("systemctl start cerniq-maintenance@weekly.service")
    result = host.run("systemctl show -p Result --value cerniq-maintenance@weekly.service")
    log = host.file("/var/log/cerniq/maintenance-weekly.log").content_string
    assert result.stdout.strip() == "success", log
    assert "step backup_verify: ok" in log and "restored into a scratch database" in log
    assert "step analyze: ok" in log
    never = sql(host, "SELECT string_agg(relname, ',') FROM pg_stat_user_tables WHERE analyze_count = 0")
    assert never == "", never
    metrics = host.file("/var/lib/prometheus/node-exporter/cerniq_backup.prom").content_string
    assert 'cerniq_backup_verify_success{task="backup"} 1' in metrics
    assert 'cerniq_backup_verify_check{check="restored",task="backup"} 1' in metrics
    scrape = host.check_output("python3 -c \"import urllib.request;"
                               "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())\"")
    assert 'cerniq_backup_verify_check{check="readable",task="backup"} 1' in scrape
    assert 'cerniq_maintenance_exit_status{task="backup"} 0' in scrape
