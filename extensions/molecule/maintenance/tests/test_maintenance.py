"""Verify cerniq.ops.maintenance (+ logrotate, node_exporter) on a database host.

Forces a daily run through systemd, then checks the data, the metrics, the log,
the lock and the logrotate configuration.
"""

RUNNER = "/opt/cerniq-maintenance/bin/cerniq-maintenance"
CONFIG = "/etc/cerniq/maintenance/daily.json"
PROM = "/var/lib/prometheus/node-exporter/cerniq_maintenance_daily.prom"
LOG = "/var/log/cerniq/maintenance-daily.log"


def sql(host, query):
    return host.check_output("sudo -u postgres psql -tAc %s cerniq_db", query)


def test_files_users_and_permissions(host):
    user = host.user("cerniq-maint")
    assert user.shell == "/usr/sbin/nologin"
    credentials = host.file("/etc/cerniq/maintenance/credentials")
    assert credentials.mode == 0o600 and credentials.user == "cerniq-maint"
    assert "molecule-db-pass" not in host.file(CONFIG).content_string
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
    assert sql(host, "SELECT count(*) FROM bronze_contacts") == "45"
    assert sql(host, "SELECT count(*) FROM silver_enrichment_log_archive") == "30"
    assert sql(host, "SELECT count(*) FROM silver_enrichment_log") == "90"
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
    assert "molecule-db-pass" not in log


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
