"""The role under systemd: a configuration change reloads Prometheus through the handler (same
process, new reload time, new configuration in force); a site rule file is deployed by
cerniq.ops.prometheus_rules with `systemctl reload` and verified loaded, then removed again; a
broken rule file is refused by promtool before anything is written while Prometheus keeps running
with the old rules.

Runs reconfigure.yml (the role with vars/scenario.yml) against the converged container."""

import json

import yaml
from prometheus_helpers import (
    RULES_DIR,
    SCENARIO_DIR,
    SERVICE,
    api,
    main_pid,
    own_metric,
    process_start,
    rule_groups,
    run_role,
)

RELOAD_TS = "prometheus_config_last_reload_success_timestamp_seconds"
BROKEN_RULES = SCENARIO_DIR / "tests" / "files" / "broken-rules.yml"
SITE_RULES = SCENARIO_DIR / "tests" / "files" / "site-rules.yml"


def loaded_scrape_interval(host):
    return yaml.safe_load(api(host, "/api/v1/status/config")["yaml"])["global"]["scrape_interval"]


def test_config_change_reloads_without_restart(host):
    # 5s after converge; alternate so that a repeated verify still changes something.
    new_interval = "7s" if loaded_scrape_interval(host) == "5s" else "5s"
    pid = main_pid(host)
    started = process_start(host, pid)
    reloaded_at = own_metric(host, RELOAD_TS)

    result = run_role("--tags", "prometheus_configure", "-e", json.dumps({"prometheus_scrape_interval": new_interval}))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Send Prometheus the reload signal" in result.stdout
    assert "Restart Prometheus" not in result.stdout
    assert host.file("/etc/prometheus/prometheus.yml").contains(f'scrape_interval: "{new_interval}"')
    # Reloaded, not restarted: same process, a later successful reload, new config in force.
    assert main_pid(host) == pid
    assert process_start(host, pid) == started
    assert own_metric(host, RELOAD_TS) > reloaded_at
    assert own_metric(host, "prometheus_config_last_reload_successful") == 1
    assert loaded_scrape_interval(host) == new_interval


def test_broken_rule_file_is_refused(host):
    pid = main_pid(host)
    groups_before = set(rule_groups(host))
    assert "cerniq-queues" in groups_before
    interval = loaded_scrape_interval(host)  # keep whatever the previous test left

    result = run_role(
        "--tags",
        "prometheus_rules",
        "-e",
        json.dumps({"prometheus_scrape_interval": interval, "prometheus_extra_rule_files": [str(BROKEN_RULES)]}),
    )

    assert result.returncode != 0
    assert "Deploy the rule files as one unit" in result.stdout
    # ansible-core 2.19 writes the failure (message included) to stderr
    output = result.stdout + result.stderr
    assert "promtool check rules refused the rule files" in output
    assert "broken-rules.yml" in output
    assert not host.file(f"{RULES_DIR}/{BROKEN_RULES.name}").exists
    # Prometheus was not touched: same process, same rules, last reload still good.
    assert host.service(SERVICE).is_running
    assert main_pid(host) == pid
    groups_after = set(rule_groups(host))
    assert groups_after == groups_before
    assert "molecule-broken" not in groups_after
    assert own_metric(host, "prometheus_config_last_reload_successful") == 1


def test_site_rule_file_deployed_through_systemd_reload_and_removed(host):
    pid = main_pid(host)
    groups_before = set(rule_groups(host))
    reloaded_at = own_metric(host, RELOAD_TS)
    interval = loaded_scrape_interval(host)  # keep whatever the previous tests left

    added = run_role(
        "--tags",
        "prometheus_rules",
        "-e",
        json.dumps({"prometheus_scrape_interval": interval, "prometheus_extra_rule_files": [str(SITE_RULES)]}),
    )

    assert added.returncode == 0, added.stdout + added.stderr
    assert host.file(f"{RULES_DIR}/{SITE_RULES.name}").content_string == SITE_RULES.read_text(encoding="utf-8")
    # systemctl reload (SIGHUP): same process, a newer successful reload, the new group loaded.
    assert main_pid(host) == pid
    assert own_metric(host, RELOAD_TS) > reloaded_at
    assert set(rule_groups(host)) == groups_before | {"molecule-site"}

    removed = run_role("--tags", "prometheus_rules", "-e", json.dumps({"prometheus_scrape_interval": interval}))

    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not host.file(f"{RULES_DIR}/{SITE_RULES.name}").exists
    assert set(rule_groups(host)) == groups_before
    assert main_pid(host) == pid
