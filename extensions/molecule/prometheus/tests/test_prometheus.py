"""Verify cerniq.ops.prometheus (with cerniq.ops.node_exporter) inside the scenario's container."""

import yaml
from prometheus_helpers import (
    CONFIG_FILE,
    RULES_DIR,
    SERVICE,
    SHIPPED_RULES_DIR,
    api,
    fetch,
    main_pid,
    query,
    rule_groups,
    wait_for,
)

SHIPPED = sorted(SHIPPED_RULES_DIR.glob("cerniq-*.yml"))


def test_packages_installed(host):
    assert host.package("prometheus").is_installed
    assert host.package("prometheus-node-exporter").is_installed


def test_service_running_and_enabled_as_prometheus(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled
    assert host.check_output("ps -o user= -p %s", main_pid(host)) == "prometheus"


def test_command_line_and_listener(host):
    defaults = host.file("/etc/default/prometheus")
    assert defaults.contains(f"--config.file={CONFIG_FILE}")
    assert defaults.contains("--web.listen-address=127.0.0.1:9090")
    # The running process really got that command line.
    cmdline = host.file(f"/proc/{main_pid(host)}/cmdline").content_string.split("\0")
    assert "--web.listen-address=127.0.0.1:9090" in cmdline
    assert host.socket("tcp://127.0.0.1:9090").is_listening


def test_rule_files_deployed_as_rendered(host):
    assert SHIPPED, f"no shipped rule files under {SHIPPED_RULES_DIR}"
    deployed = host.file(RULES_DIR)
    assert deployed.is_directory
    # Plus cerniq.ops.prometheus_rules' manifest of the files it wrote (hidden, not matched by *.yml).
    assert sorted(name for name in deployed.listdir() if not name.startswith(".")) == [path.name for path in SHIPPED]
    assert host.file(f"{RULES_DIR}/.cerniq-rules-manifest.json").is_file
    for path in SHIPPED:
        remote = host.file(f"{RULES_DIR}/{path.name}")
        assert remote.user == "root"
        assert remote.group == "prometheus"
        assert remote.mode == 0o644
        # Byte for byte the rule file the role renders on the controller (Prometheus templates kept).
        assert remote.content_string == path.read_text(encoding="utf-8"), path.name
    assert host.file(f"{RULES_DIR}/cerniq-queues.yml").contains(r"{{ \$labels.queue }}")


def test_config_is_valid(host):
    config = host.file(CONFIG_FILE)
    assert config.group == "prometheus"
    assert config.mode == 0o640
    check = host.run("promtool check config %s", CONFIG_FILE)
    assert check.rc == 0, check.stdout + check.stderr
    # promtool also loaded every rule file through the absolute rule_files glob.
    assert f"{RULES_DIR}/cerniq-queues.yml" in check.stdout + check.stderr


def test_loaded_config_has_the_scenario_targets(host):
    loaded = yaml.safe_load(api(host, "/api/v1/status/config")["yaml"])
    jobs = {job["job_name"]: job for job in loaded["scrape_configs"]}
    assert jobs["node"]["static_configs"][0]["targets"] == ["127.0.0.1:9100"]
    for name in ("postgres", "sql", "redis", "cerniq-workers"):
        assert [t for sc in jobs[name].get("static_configs", []) for t in sc.get("targets", [])] == [], name
    assert loaded["rule_files"] == [f"{RULES_DIR}/*.yml"]


def test_node_exporter_really_scraped(host):
    # Series of the package's first start (Debian's default config: localhost:9100) may
    # still be inside the lookback window; the role's target is 127.0.0.1:9100.
    def node_up():
        return "127.0.0.1:9100" in [s["metric"]["instance"] for s in query(host, 'up{job="node"} == 1')]

    wait_for('up{job="node"} == 1', node_up)
    # The running scrape pool of job "node" is exactly the role's target, and healthy.
    targets = [t for t in api(host, "/api/v1/targets", state="active")["activeTargets"] if t["labels"]["job"] == "node"]
    assert [(t["labels"]["instance"], t["health"]) for t in targets] == [("127.0.0.1:9100", "up")]
    # Real node_exporter data arrived through that scrape.
    assert query(host, 'node_exporter_build_info{job="node",instance="127.0.0.1:9100"}')


def test_last_reload_successful(host):
    # Through the query API (Prometheus scrapes itself: job "prometheus")...
    series = wait_for(
        "prometheus_config_last_reload_successful",
        lambda: query(host, 'prometheus_config_last_reload_successful{job="prometheus",instance="127.0.0.1:9090"}'),
    )
    assert [s["value"][1] for s in series] == ["1"]
    # ... and on its own metrics page.
    assert "\nprometheus_config_last_reload_successful 1\n" in fetch(host, "/metrics")


def test_cerniq_rule_groups_loaded(host):
    expected = {
        group["name"] for path in SHIPPED for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    }
    groups = rule_groups(host)
    assert expected <= set(groups)
    assert {"cerniq-queues", "cerniq-nodes", "cerniq-monitoring"} <= expected
    for name in expected:
        assert groups[name]["file"].startswith(RULES_DIR + "/")
    # The alert templates reached Prometheus unrendered.
    annotations = [rule.get("annotations", {}) for rule in groups["cerniq-queues"]["rules"]]
    assert any("{{ $labels.queue }}" in a.get("summary", "") for a in annotations)


def test_rules_are_evaluated(host):
    """The postgres and sql jobs have no target here, so ScrapeJobMissing becomes active,
    with its annotations rendered by Prometheus."""

    def active():
        return [
            alert
            for alert in api(host, "/api/v1/alerts")["alerts"]
            if alert["labels"]["alertname"] == "ScrapeJobMissing"
        ]

    alerts = wait_for("ScrapeJobMissing to become active", active)
    assert {alert["labels"]["job"] for alert in alerts} == {"postgres", "redis", "sql"}
    for alert in alerts:
        assert alert["state"] in ("pending", "firing")
        assert alert["labels"]["severity"] == "sev3"
        assert alert["annotations"]["summary"] == f"Scrape job {alert['labels']['job']} has no targets"
