"""Helpers for the prometheus scenario's testinfra checks (HTTP from inside the container,
Prometheus API queries, re-running the role with ansible-playbook)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

SERVICE = "prometheus"
BASE_URL = "http://127.0.0.1:9090"
RULES_DIR = "/etc/prometheus/rules.d/cerniq"
CONFIG_FILE = "/etc/prometheus/prometheus.yml"
SCENARIO_DIR = Path(__file__).resolve().parents[1]
SHIPPED_RULES_DIR = SCENARIO_DIR.parents[2] / "roles" / "prometheus" / "files" / "rules"

# Runs inside the container (no curl in the image): GET, retried until the server answers.
FETCH = textwrap.dedent("""\
    import sys, time, urllib.error, urllib.request
    for attempt in range(60):
        try:
            sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
            break
        except urllib.error.HTTPError:
            raise
        except OSError:
            time.sleep(1)
    else:
        sys.exit("no answer from " + sys.argv[1])
    """)


def fetch(host, path):
    """Body of GET BASE_URL+path, fetched inside the container."""
    return host.check_output("python3 -c %s %s", FETCH, BASE_URL + path)


def api(host, path, **params):
    """`data` of a Prometheus API answer (asserts status success)."""
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    answer = json.loads(fetch(host, path + query))
    assert answer["status"] == "success", answer
    return answer["data"]


def query(host, promql):
    """Instant query; the list of result series."""
    return api(host, "/api/v1/query", query=promql)["result"]


def wait_for(description, probe, attempts=90, delay=2):
    """Poll probe() until it returns something truthy (a readiness wait, not a timing check)."""
    for _unused in range(attempts):
        value = probe()
        if value:
            return value
        time.sleep(delay)
    raise AssertionError(f"gave up waiting for {description}")


def own_metric(host, name):
    """A sample of Prometheus' own /metrics page (read directly, not through a scrape)."""
    for line in fetch(host, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def main_pid(host):
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    assert pid not in ("", "0")
    return pid


def process_start(host, pid):
    """Start time of a process (clock ticks since boot, /proc/PID/stat field 22)."""
    stat = host.check_output("cat /proc/%s/stat", pid)
    return int(stat.rsplit(")", 1)[1].split()[19])


def rule_groups(host):
    return {group["name"]: group for group in api(host, "/api/v1/rules")["groups"]}


def run_role(*args):
    """Run reconfigure.yml (the role alone, with vars/scenario.yml) against the scenario's container
    through Molecule's inventory; returns the CompletedProcess."""
    playbook = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
    command = [playbook, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO_DIR / "reconfigure.yml"), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
    print(result.stdout, result.stderr)
    return result
