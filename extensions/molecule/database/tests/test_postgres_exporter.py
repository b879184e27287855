"""Verify cerniq.ops.postgres_exporter on the database host, beside cerniq.ops.postgresql."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import cerniq_testinfra  # noqa: E402

SERVICE = "prometheus-postgres-exporter"
ENV_FILE = "/etc/default/prometheus-postgres-exporter"
QUERY_FILE = "/etc/prometheus/postgres_exporter_queries.yaml"
URL = "http://127.0.0.1:9187/metrics"
# The exporter's password in converge.yml (quote, space, dollar, backslash).
PASSWORD = "exp'orter pa$$ \\w0rd"


def scrape(host, wait_for="pg_up 1"):
    """Fetch the metrics page from inside the container, until it shows wait_for."""
    return cerniq_testinfra.fetch(host, URL, wait_for, attempts=30)


def main_pid(host):
    return cerniq_testinfra.main_pid(host, SERVICE)


def test_service_running_and_enabled(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_runs_as_unprivileged_user(host):
    assert host.check_output("ps -o user= -p %s", main_pid(host)) == "prometheus"


def test_env_file_is_root_only(host):
    env = host.file(ENV_FILE)
    assert env.user == "root"
    assert env.group == "root"
    assert env.mode == 0o600
    assert env.contains("DATA_SOURCE_NAME=")
    assert env.contains("--extend.query-path=" + QUERY_FILE)


def test_password_not_on_any_command_line(host):
    args = host.check_output("ps -eo args=")
    assert "prometheus-postgres-exporter" in args
    assert PASSWORD not in args
    assert "w0rd" not in args
    cmdline = host.check_output("tr '\\0' ' ' < /proc/%s/cmdline", main_pid(host))
    assert "--extend.query-path=" + QUERY_FILE in cmdline


def test_monitoring_role_has_pg_monitor(host):
    out = host.check_output(
        "runuser -u postgres -- psql -tA -c "
        "\"SELECT rolcanlogin, pg_has_role('cerniq_exporter', 'pg_monitor', 'MEMBER'), rolsuper "
        "FROM pg_roles WHERE rolname = 'cerniq_exporter'\""
    )
    assert out == "t|t|f"


def test_sandboxing_applied(host):
    props = host.check_output("systemctl show -p NoNewPrivileges -p ProtectSystem -p PrivateTmp %s", SERVICE)
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    assert "PrivateTmp=yes" in props


def test_scrape_has_pg_up_and_settings(host):
    metrics = scrape(host)
    lines = metrics.splitlines()
    assert "pg_up 1" in lines
    assert any(line.startswith("pg_settings_max_connections") and not line.endswith(" 0") for line in lines)
    assert any(line.startswith("pg_stat_activity_count{") for line in lines)


def test_scrape_has_stat_statements(host):
    # The exporter's own queries land in pg_stat_statements; a later scrape shows them.
    metrics = scrape(host, "pg_stat_statements_calls_total{")
    assert "pg_stat_statements_seconds_total{" in metrics
    assert 'user="cerniq_exporter"' in metrics
