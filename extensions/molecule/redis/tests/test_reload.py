"""The role under systemd: a changed setting is applied at run time with CONFIG SET (same
process), a changed password by a restart (the running server no longer takes the new one).
Runs converge.yml again against the converged container."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from cerniq_testinfra import main_pid, run_playbook  # noqa: E402
from test_redis import PASSWORD, SERVICE, cli, config  # noqa: E402

CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"
BULLMQ = {"maxmemory-policy": "noeviction", "appendonly": "yes"}


def converge(**extra_vars):
    result = run_playbook(CONVERGE, "-e", json.dumps(extra_vars))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_changed_setting_applied_at_run_time(host):
    hz = "15" if config(host, "hz") != "15" else "20"
    pid = main_pid(host, SERVICE)
    cli(host, "SET", "cerniq:molecule", "kept")
    out = converge(redis_settings=dict(BULLMQ, hz=hz))
    assert "Apply the Redis settings at run time" in out
    assert config(host, "hz") == hz
    assert main_pid(host, SERVICE) == pid
    assert cli(host, "GET", "cerniq:molecule") == "kept"


def test_changed_password_restarts(host):
    new = "another 'pass\"word\\"
    pid = main_pid(host, SERVICE)
    try:
        converge(cerniq_redis={"redis_port": 6379, "redis_password": new})
        assert main_pid(host, SERVICE) != pid
        assert cli(host, "PING", password=new) == "PONG"
        assert "NOAUTH" in cli(host, "PING", password=PASSWORD)
        assert cli(host, "GET", "cerniq:molecule", password=new) == "kept"
    finally:
        converge()
    assert cli(host, "PING") == "PONG"
