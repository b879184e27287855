"""The set-up itself, from nothing: the `fresh` layer of `make test`.

A fresh minimal Debian 12 machine is the project's locally built base image
(scripts/build-image.sh: debootstrap minbase + systemd, nothing added by hand) booted as a
systemd container. Into it goes a copy of exactly the files a clone has; inside, as root,
`scripts/bootstrap.sh` installs everything (Debian packages, the pinned virtualenvs) and
`make demo-local` must then pass - the README's promise, checked where nothing was installed
before - and its summary must show every incident found and fixed (the suite's only run of the
local demo). The container stack itself (podman, netavark, iptables, aardvark-dns) cannot be
exercised inside a container; bootstrap's own check (scripts/check-containers.sh) covers it
on the host, and the Molecule and lab layers use it.

The host's CA bundle is passed in (this kind of machine reaches PyPI through a CA that a fresh
rootfs does not trust; see ../shared/reference/environment.md), as are the PIP_* settings of
the environment. Nothing else of the host is visible inside.

Takes 6-10 minutes, most of it apt-get and pip downloading.
"""

import json
import os
import shutil
import subprocess
import tarfile
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PODMAN_ENV = dict(os.environ, CONTAINERS_CONF=os.path.join(REPO, 'extensions', 'molecule', 'containers.conf'))
HOST_CA = '/etc/ssl/certs/ca-certificates.crt'
PIP_SETTINGS = ('PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_DEFAULT_TIMEOUT', 'PIP_DISABLE_PIP_VERSION_CHECK',
                'PIP_TRUSTED_HOST')
IN_CONTAINER = '/root/cerniq-ops'
DEMO_DIR = '/root/cerniq-demo'


def podman(*args, timeout=120, check=True):
    proc = subprocess.run(['podman'] + list(args), env=PODMAN_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def clone_files():
    """The files a clone of this checkout has (tracked, plus untracked ones git does not ignore)."""
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                         stdout=subprocess.PIPE, check=True).stdout
    return [f for f in out.decode().split('\0') if f and os.path.lexists(os.path.join(REPO, f))]


@pytest.fixture(scope='module')
def fresh_machine(tmp_path_factory):
    image = subprocess.run([os.path.join(REPO, 'scripts', 'build-image.sh')], env=PODMAN_ENV, stdout=subprocess.PIPE,
                           text=True, check=True).stdout.strip().splitlines()[-1]
    work = tmp_path_factory.mktemp('fresh')
    archive = work / 'clone.tar'
    with tarfile.open(archive, 'w') as tar:
        for name in clone_files():
            tar.add(os.path.join(REPO, name), arcname=name, recursive=False)
    name = 'cerniq-fresh-%s' % uuid.uuid4().hex[:8]
    args = ['run', '-d', '--name', name, '--systemd=always', '--label', 'cerniq.fresh=1']
    if os.environ.get('CERNIQ_CONTAINER_CPU_SHARES'):  # the lane's priority (scripts/run-tests.sh)
        args += ['--cpu-shares', os.environ['CERNIQ_CONTAINER_CPU_SHARES']]
    if os.path.exists(HOST_CA):
        shutil.copy(HOST_CA, work / 'host-ca.crt')
        args += ['-v', '%s:/run/host-ca.crt:ro' % (work / 'host-ca.crt'), '-e', 'PIP_CERT=/run/host-ca.crt']
    for var in PIP_SETTINGS:
        if var in os.environ:
            args += ['-e', '%s=%s' % (var, os.environ[var])]
    podman(*(args + [image, '/sbin/init']))
    try:
        podman('exec', name, 'mkdir', '-p', IN_CONTAINER)
        podman('cp', str(archive), '%s:/root/clone.tar' % name)
        podman('exec', name, 'tar', '-C', IN_CONTAINER, '-xf', '/root/clone.tar')
        yield name
    finally:
        podman('rm', '-f', '-t', '0', name, check=False)


def run_inside(name, command, timeout):
    return podman('exec', '-w', IN_CONTAINER, '-e', 'CERNIQ_SKIP_CONTAINER_CHECK=1', name, 'bash', '-c', command,
                  timeout=timeout, check=False)


def test_nothing_of_the_project_is_installed_before(fresh_machine):
    for tool in ('psql', 'redis-server', 'promtool', 'make', 'podman'):
        proc = run_inside(fresh_machine, 'command -v %s' % tool, timeout=30)
        assert proc.returncode != 0, '%s is already in the fresh image' % tool


def test_bootstrap_installs_everything_from_nothing(fresh_machine):
    proc = run_inside(fresh_machine, 'scripts/bootstrap.sh 2>&1 | grep -v "^WARNING: Location"; exit ${PIPESTATUS[0]}',
                      timeout=30 * 60)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert '[bootstrap] ready' in proc.stdout
    # Every package bootstrap lists is installed, the container tooling included.
    listed = run_inside(fresh_machine, 'scripts/bootstrap.sh --missing', timeout=60)
    assert listed.returncode == 0 and listed.stdout.strip() == '', listed.stdout
    # A second run installs nothing and rebuilds nothing.
    again = run_inside(fresh_machine, 'scripts/bootstrap.sh', timeout=300)
    assert again.returncode == 0, again.stdout[-3000:]
    assert 'Debian packages: all present' in again.stdout and 'building virtualenv' not in again.stdout


@pytest.fixture(scope='module')
def local_demo(fresh_machine, tmp_path_factory):
    """`make demo-local` on the fresh machine, after bootstrap; its summary.json and reports copied out.

    The only run of the local demo in the suite: its facts are checked below, where a user would
    first run it.
    """
    proc = run_inside(fresh_machine, 'CERNIQ_DEMO_DIR=%s make demo-local' % DEMO_DIR, timeout=20 * 60)
    state = tmp_path_factory.mktemp('demo-local')
    podman('cp', '%s:%s/.' % (fresh_machine, DEMO_DIR), str(state), check=False)
    summary = state / 'summary.json'
    return proc, json.loads(summary.read_text()) if summary.exists() else None, state


def test_demo_local_passes_on_the_fresh_machine(local_demo):
    proc, summary, _state = local_demo
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert '== Demo summary ==' in proc.stdout, proc.stdout[-4000:]
    assert '==> [12/12]' in proc.stdout
    assert summary is not None and summary['mode'] == 'local'


def test_local_demo_finds_every_incident_and_fixes_it(local_demo):
    _proc, summary, _state = local_demo
    found, after = summary['found'], summary['after']
    assert found['imports stuck in processing'] >= 1 and after['imports stuck in processing'] == 0
    assert found['stalled ingest jobs (active, no lock)'] >= 120
    assert after['stalled ingest jobs (active, no lock)'] == 0
    assert found['circuit breakers OPEN'] == 1 and after['circuit breakers OPEN'] == 0
    assert found['approval tasks overdue, not escalated'] > after['approval tasks overdue, not escalated']
    assert found['overdue tasks auto-approved by policy'] == 0 < after['overdue tasks auto-approved by policy']
    assert found['unscored companies, scoring not requested'] > after['unscored companies, scoring not requested']
    assert found['Redis cache keys'] == 2000 and after['Redis cache keys'] == 0
    # the daily maintenance purged the 400 promoted contacts and archived the 3,000 log rows of retention_due
    assert found['rows past retention (bronze 30 d, log 90 d)'] == 3400
    assert after['rows past retention (bronze 30 d, log 90 d)'] == 0


def test_local_demo_jobs_of_the_crashed_worker_run_exactly_once(local_demo):
    _proc, summary, _state = local_demo
    bullmq = summary['bullmq']
    assert bullmq['crashed'] == 120
    assert bullmq['duplicates'] == 0
    assert bullmq['left'] == 0
    assert bullmq['processed'] == 301  # the 300 produced jobs and the stuck import's stalled job


def test_local_demo_calls_the_api_and_writes_the_capacity_report(local_demo):
    _proc, summary, state = local_demo
    assert summary['api_calls'].get('escalate', 0) >= 1
    assert any(path.startswith('/api/v1/internal/scoring') for path in summary['api_calls'])
    report = (state / 'reports' / 'capacity.md').read_text()
    assert 'Queue depth' in report or 'queue depth' in report or 'queue_depth' in report
