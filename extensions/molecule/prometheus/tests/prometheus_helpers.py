"""Helpers for the prometheus scenario's testinfra checks (HTTP from inside the container,
Prometheus API queries, re-running the role with ansible-playbook), on top of
../../shared/cerniq_testinfra.py."""

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from cerniq_testinfra import fetch as _fetch, main_pid as _main_pid, metric_value, process_start  # noqa: E402
from cerniq_testinfra import run_playbook, wait_for  # noqa: E402

__all__ = [
    "BASE_URL",
    "CONFIG_FILE",
    "RULES_DIR",
    "SCENARIO_DIR",
    "SERVICE",
    "SHIPPED_RULES_DIR",
    "api",
    "fetch",
    "main_pid",
    "own_metric",
    "process_start",
    "query",
    "rule_groups",
    "run_role",
    "wait_for",
]

SERVICE = "prometheus"
BASE_URL = "http://127.0.0.1:9090"
RULES_DIR = "/etc/prometheus/rules.d/cerniq"
CONFIG_FILE = "/etc/prometheus/prometheus.yml"
SCENARIO_DIR = Path(__file__).resolve().parents[1]


def _render_default_rules():
    """The shipped rule templates rendered on the controller with the settings' defaults (what the
    scenario deploys: it sets no cerniq_* variable), by the role's own rendering."""
    path = Path(tempfile.mkdtemp(prefix="cerniq-molecule-rules-"))
    atexit.register(shutil.rmtree, str(path), True)
    subprocess.run([str(SCENARIO_DIR.parents[2] / "scripts" / "render-rules.sh"), str(path)], check=True)
    return path


SHIPPED_RULES_DIR = _render_default_rules()


def fetch(host, path):
    """Body of GET BASE_URL+path, fetched inside the container."""
    return _fetch(host, BASE_URL + path)


def api(host, path, **params):
    """`data` of a Prometheus API answer (asserts status success)."""
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    answer = json.loads(fetch(host, path + query))
    assert answer["status"] == "success", answer
    return answer["data"]


def query(host, promql):
    """Instant query; the list of result series."""
    return api(host, "/api/v1/query", query=promql)["result"]


def own_metric(host, name):
    """A sample of Prometheus' own /metrics page (read directly, not through a scrape)."""
    return metric_value(fetch(host, "/metrics"), name)


def main_pid(host):
    return _main_pid(host, SERVICE)


def rule_groups(host):
    return {group["name"]: group for group in api(host, "/api/v1/rules")["groups"]}


def run_role(*args):
    """Run reconfigure.yml (the role alone, with vars/scenario.yml) against the scenario's container."""
    return run_playbook(SCENARIO_DIR / "reconfigure.yml", *args)
