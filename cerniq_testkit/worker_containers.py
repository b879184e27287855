"""Real podman containers standing in for CERNIQ workers (runbook 2.1, 2.2, 2.4 worker steps).

The image is the project's own Debian image (scripts/build-image.sh, built once and cached); a
"worker" is a container running a shell command, so a test controls what it logs and can read its
environment afterwards. Container names carry the test process id: helpers running in parallel never
share one.
"""

import json
import os
import shutil
import subprocess

from cerniq_testkit.ansible_run import REPO

HAVE_PODMAN = shutil.which('podman') is not None
CONTAINERS_CONF = os.path.join(REPO, 'extensions', 'molecule', 'containers.conf')
ENV = dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF)


def podman(*args, check=True):
    """Run podman with the project's containers.conf; returns its stdout (stderr merged)."""
    return subprocess.run(['podman'] + [str(a) for a in args], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=check).stdout.strip()


def worker_image():
    """The project's Debian image reference (built once, then reused)."""
    return subprocess.run([os.path.join(REPO, 'scripts', 'build-image.sh')], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, check=True).stdout.strip().splitlines()[-1]


def remove(name):
    subprocess.run(['podman', 'rm', '-f', '-t', '0', name], env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def inspect(name):
    """``podman inspect`` of one container as a dict."""
    return json.loads(podman('inspect', '--type', 'container', name))[0]


def running_env(name):
    """The environment of the container's running process (read with ``podman exec env``)."""
    lines = podman('exec', name, 'env').splitlines()
    return dict(line.split('=', 1) for line in lines if '=' in line)
