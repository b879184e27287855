"""The role's reload handler under systemd: a configuration change reloads Alertmanager
(same process, new successful reload, new configuration in force), no restart.

Runs reconfigure.yml (the role with vars/scenario.yml) against the converged container."""

import json

from alertmanager_helpers import CONFIG_FILE, api, main_pid, own_metric, process_start, run_role

RELOAD_TS = "alertmanager_config_last_reload_success_timestamp_seconds"


def test_config_change_reloads_without_restart(host):
    # 4h after converge; alternate so that a repeated verify still changes something.
    original = api(host, "/api/v2/status")["config"]["original"]
    new_interval = "3h" if "repeat_interval: 4h" in original else "4h"
    pid = main_pid(host)
    started = process_start(host, pid)
    reloaded_at = own_metric(host, RELOAD_TS)

    result = run_role("--tags", "alertmanager_configure", "-e", json.dumps({"alertmanager_repeat_interval": new_interval}))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Send Alertmanager the reload signal" in result.stdout
    assert "Restart Alertmanager" not in result.stdout
    assert host.file(CONFIG_FILE).contains(f'repeat_interval: "{new_interval}"')
    assert main_pid(host) == pid
    assert process_start(host, pid) == started
    assert own_metric(host, RELOAD_TS) > reloaded_at
    assert own_metric(host, "alertmanager_config_last_reload_successful") == 1
    assert f"repeat_interval: {new_interval}" in api(host, "/api/v2/status")["config"]["original"]
