"""Verify cerniq.ops.node_exporter inside the scenario's systemd container."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import cerniq_testinfra  # noqa: E402

SERVICE = "prometheus-node-exporter"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
URL = "http://127.0.0.1:9100/metrics"


def scrape(host):
    """Fetch the metrics page from inside the container (retries until it answers)."""
    return cerniq_testinfra.fetch(host, URL, attempts=30)


def test_package_installed(host):
    assert host.package("prometheus-node-exporter").is_installed


def test_service_running_and_enabled(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_runs_as_unprivileged_user(host):
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    assert pid not in ("", "0")
    user = host.check_output("ps -o user= -p %s", pid)
    assert user == "prometheus"


def test_sandboxing_applied(host):
    props = host.check_output(
        "systemctl show -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp %s", SERVICE
    )
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    assert "ProtectHome=read-only" in props
    assert "PrivateTmp=yes" in props
    # ... and really in force: the exporter sees / mounted read-only.
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    mounts = [line.split() for line in host.check_output("cat /proc/%s/mountinfo", pid).splitlines()]
    root_options = [fields[5].split(",") for fields in mounts if fields[4] == "/"]
    assert root_options and "ro" in root_options[-1]


def test_reload_is_refused_not_fatal(host):
    """Debian's SIGHUP reload would stop the exporter; the drop-in removes it."""
    assert host.run("systemctl reload %s", SERVICE).rc != 0
    assert host.service(SERVICE).is_running


def test_command_line(host):
    defaults = host.file("/etc/default/prometheus-node-exporter")
    assert defaults.contains("--web.listen-address=0.0.0.0:9100")
    assert defaults.contains(f"--collector.textfile.directory={TEXTFILE_DIR}")


def test_textfile_directory(host):
    directory = host.file(TEXTFILE_DIR)
    assert directory.is_directory
    assert directory.user == "prometheus"
    assert directory.group == "prometheus"
    assert directory.mode == 0o775


def test_listening(host):
    assert host.socket("tcp://9100").is_listening


def test_scrape_has_build_info(host):
    assert "node_exporter_build_info{" in scrape(host)


def test_textfile_metric_is_exported(host):
    prom = f"{TEXTFILE_DIR}/molecule_verify.prom"
    host.check_output(
        "printf '%%s\\n' '# TYPE cerniq_molecule_verify gauge' 'cerniq_molecule_verify 42' > %s.tmp && mv %s.tmp %s",
        prom,
        prom,
        prom,
    )
    try:
        metrics = scrape(host)
    finally:
        host.run("rm -f %s", prom)
    assert "cerniq_molecule_verify 42" in metrics
