"""Helpers for the alertmanager scenario's testinfra checks (HTTP from inside the container,
re-running the role with ansible-playbook), on top of ../../shared/cerniq_testinfra.py."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from cerniq_testinfra import fetch as _fetch, main_pid as _main_pid, metric_value, process_start  # noqa: E402
from cerniq_testinfra import run_playbook, wait_for  # noqa: E402

__all__ = [
    "BASE_URL",
    "CONFIG_FILE",
    "SCENARIO_DIR",
    "SERVICE",
    "WEBHOOK_DIR",
    "api",
    "fetch",
    "main_pid",
    "own_metric",
    "process_start",
    "run_role",
    "wait_for",
]

SERVICE = "prometheus-alertmanager"
BASE_URL = "http://127.0.0.1:9093"
CONFIG_FILE = "/etc/prometheus/alertmanager.yml"
WEBHOOK_DIR = "/var/tmp/molecule-webhook"
SCENARIO_DIR = Path(__file__).resolve().parents[1]


def fetch(host, path):
    """Body of GET BASE_URL+path, fetched inside the container."""
    return _fetch(host, BASE_URL + path)


def api(host, path):
    return json.loads(fetch(host, path))


def own_metric(host, name):
    return metric_value(fetch(host, "/metrics"), name)


def main_pid(host):
    return _main_pid(host, SERVICE)


def run_role(*args):
    """Run reconfigure.yml (the role alone, with vars/scenario.yml) against the scenario's container."""
    return run_playbook(SCENARIO_DIR / "reconfigure.yml", *args)
