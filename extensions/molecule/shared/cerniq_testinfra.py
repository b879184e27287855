"""What the scenarios' testinfra checks share: HTTP from inside a container (the image has no
curl), readiness waits, facts about a service's process, and re-running a scenario playbook.

A scenario's tests import it with::

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
    import cerniq_testinfra  # noqa: E402
"""

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# Runs inside the container: GET argv[1] until the body contains argv[2] ("" = any answer),
# at most argv[3] attempts a second apart. Connection errors and 503 (starting up) are retried,
# other HTTP errors are not.
FETCH = textwrap.dedent("""\
    import sys, time, urllib.error, urllib.request
    url, marker, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for attempt in range(attempts):
        try:
            body = urllib.request.urlopen(url, timeout=10).read().decode()
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise
            time.sleep(1)
            continue
        except OSError:
            time.sleep(1)
            continue
        if marker in body:
            sys.stdout.write(body)
            break
        time.sleep(1)
    else:
        sys.exit("no %r from %s" % (marker, url))
    """)


def fetch(host, url, marker="", attempts=60):
    """Body of GET url, fetched inside the container once it answers (and shows marker)."""
    return host.check_output("python3 -c %s %s %s %s", FETCH, url, marker, str(attempts))


def wait_for(description, probe, attempts=90, delay=2):
    """Poll probe() until it returns something truthy (a readiness wait, not a timing check)."""
    for _unused in range(attempts):
        value = probe()
        if value:
            return value
        time.sleep(delay)
    raise AssertionError(f"gave up waiting for {description}")


def metric_value(text, name):
    """The value of the unlabelled sample ``name`` in exposition text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


def main_pid(host, service):
    pid = host.check_output("systemctl show -p MainPID --value %s", service)
    assert pid not in ("", "0"), f"{service} has no main process"
    return pid


def process_start(host, pid):
    """Start time of a process (clock ticks since boot, /proc/PID/stat field 22)."""
    stat = host.check_output("cat /proc/%s/stat", pid)
    return int(stat.rsplit(")", 1)[1].split()[19])


def run_playbook(playbook, *args):
    """ansible-playbook ``playbook`` against the scenario's containers (Molecule's inventory)."""
    binary = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
    command = [binary, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
    print(result.stdout, result.stderr)
    return result
