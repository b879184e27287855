"""Verify cerniq.ops.alertmanager inside the scenario's systemd container."""

import json

import pytest
from alertmanager_helpers import BASE_URL, CONFIG_FILE, SERVICE, WEBHOOK_DIR, api, main_pid, wait_for

ROUTES = [
    # (labels, receiver expected by the role's defaults)
    ({"severity": "sev1"}, "oncall-pager"),
    ({"severity": "sev2"}, "oncall-pager"),
    ({"severity": "sev3"}, "team-chat"),
    ({"severity": "sev4"}, "tickets"),
    ({"alertname": "NoSeverity"}, "team-chat"),
    ({"severity": "sev1", "escalation": "oncall"}, "oncall-pager"),
    ({"severity": "sev1", "escalation": "lead"}, "team-lead"),
    ({"severity": "sev1", "escalation": "manager"}, "engineering-manager"),
    ({"severity": "sev2", "escalation": "exec"}, "executive"),
    # SEV3 does not escalate: the label changes nothing.
    ({"severity": "sev3", "escalation": "lead"}, "team-chat"),
]


def label_args(labels):
    return " ".join(f"{key}={value}" for key, value in labels.items())


def test_package_installed(host):
    assert host.package("prometheus-alertmanager").is_installed


def test_service_running_and_enabled_as_prometheus(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled
    assert host.check_output("ps -o user= -p %s", main_pid(host)) == "prometheus"


def test_command_line_and_listener(host):
    cmdline = host.file(f"/proc/{main_pid(host)}/cmdline").content_string.split("\0")
    assert f"--config.file={CONFIG_FILE}" in cmdline
    assert "--web.listen-address=127.0.0.1:9093" in cmdline
    assert "--cluster.listen-address=" in cmdline
    assert host.socket("tcp://127.0.0.1:9093").is_listening


def test_config_file_passes_amtool(host):
    config = host.file(CONFIG_FILE)
    assert config.user == "root"
    assert config.group == "prometheus"
    assert config.mode == 0o640
    check = host.run("amtool check-config %s", CONFIG_FILE)
    assert check.rc == 0, check.stdout + check.stderr
    assert " - 6 receivers" in check.stdout


@pytest.mark.parametrize(("labels", "receiver"), ROUTES, ids=[label_args(labels) for labels, _unused in ROUTES])
def test_route(host, labels, receiver):
    result = host.run(
        f"amtool config routes test --config.file={CONFIG_FILE} --verify.receivers=%s {label_args(labels)}",
        receiver,
    )
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_route_check_can_fail(host):
    """The route test above really discriminates: a wrong expectation fails."""
    result = host.run(f"amtool config routes test --config.file={CONFIG_FILE} --verify.receivers=tickets severity=sev1")
    assert result.rc != 0


def test_status_api(host):
    status = api(host, "/api/v2/status")
    assert status["cluster"]["status"] == "disabled"
    assert status["versionInfo"]["version"]
    # The running configuration is the role's: the webhook receivers of vars/scenario.yml.
    assert "http://127.0.0.1:9999/team-lead" in status["config"]["original"]


def received(host, receiver, alertname):
    """Alert names the test webhook got for this receiver."""
    log = host.file(f"{WEBHOOK_DIR}/{receiver}.jsonl")
    if not log.exists:
        return False
    names = [
        alert["labels"]["alertname"] for line in log.content_string.splitlines() for alert in json.loads(line)["alerts"]
    ]
    return alertname in names


def test_posted_alerts_are_routed_and_notified(host):
    add = f"amtool alert add --alertmanager.url={BASE_URL} --annotation=summary=molecule"
    host.check_output(f"{add} alertname=MoleculePage severity=sev1 service=molecule")
    host.check_output(f"{add} alertname=MoleculeEscalation severity=sev1 escalation=lead service=molecule")
    host.check_output(f"{add} alertname=MoleculeInhibited severity=sev2 service=molecule")

    alerts = {alert["labels"]["alertname"]: alert for alert in api(host, "/api/v2/alerts")}
    assert {"MoleculePage", "MoleculeEscalation", "MoleculeInhibited"} <= set(alerts)
    assert [r["name"] for r in alerts["MoleculePage"]["receivers"]] == ["oncall-pager"]
    assert [r["name"] for r in alerts["MoleculeEscalation"]["receivers"]] == ["team-lead"]
    assert alerts["MoleculePage"]["annotations"]["summary"] == "molecule"

    # The SEV1 alerts of service "molecule" inhibit its SEV2 alert.
    def inhibited():
        alert = {a["labels"]["alertname"]: a for a in api(host, "/api/v2/alerts")}["MoleculeInhibited"]
        return alert["status"]["state"] == "suppressed" and alert["status"]["inhibitedBy"]

    wait_for("MoleculeInhibited to be inhibited", inhibited)

    # Notifications really leave through the receivers' webhooks (after group_wait).
    wait_for("oncall-pager webhook", lambda: received(host, "oncall-pager", "MoleculePage"))
    wait_for("team-lead webhook", lambda: received(host, "team-lead", "MoleculeEscalation"))
    assert not received(host, "oncall-pager", "MoleculeEscalation")
    assert not received(host, "oncall-pager", "MoleculeInhibited")
