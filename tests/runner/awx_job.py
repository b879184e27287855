"""Run a playbook the way AWX / Automation Controller does: ``ansible-runner run`` on a private data dir.

A job gets its own private data dir: ``project/`` (a copy of the example AWX project,
docs/examples/awx-project), ``inventory/`` (the project's inventory, its connection settings
pointed at the test's throwaway servers), ``env/extravars`` (survey answers and extra-vars
credentials), ``env/envvars`` (environment credentials) and ``env/settings`` (runner's
timeouts). ``ansible-runner run`` gives the playbook a pseudo-terminal, as AWX does, so a
playbook that prompts waits until runner's ``idle_timeout`` ends the job with status
``timeout`` - the tests assert that never happens.

After the job the artifacts are read: status, rc, stdout and every job event
(``artifacts/<ident>/job_events/*.json``). Every job is checked for secrets: none of the
strings in ``secrets`` may appear in stdout, in any job event or in any other artifact than
runner's records of the job environment (RUNNER_ENV_FILES).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
EXAMPLE_PROJECT = os.path.join(REPO, 'docs', 'examples', 'awx-project')
CONTAINERS_CONF = os.path.join(REPO, 'extensions', 'molecule', 'containers.conf')
IDLE_TIMEOUT = 90
# ansible-runner 2.4 writes the job's environment, values included (so the credentials' environment
# variables too), into artifacts/<ident>/command and, with --process-isolation, artifacts/<ident>/env.list
# (the directory is 0700). These are runner's own records, not job events; AWX removes the private data
# dir after the job.
RUNNER_ENV_FILES = ('command', 'env.list')


class Job:
    """The outcome of one ``ansible-runner run``: status, rc, stdout, events, artifacts (set_stats)."""

    def __init__(self, private_dir, ident, seconds):
        self.seconds = seconds
        artifacts = os.path.join(private_dir, 'artifacts', ident)
        self.status = _read(os.path.join(artifacts, 'status'))
        self.rc = int(_read(os.path.join(artifacts, 'rc')) or -1)
        self.stdout = _read(os.path.join(artifacts, 'stdout'))
        self.event_texts = [_read(path) for path in glob.glob(os.path.join(artifacts, 'job_events', '*.json'))]
        self.events = sorted((json.loads(text) for text in self.event_texts), key=lambda e: e['counter'])
        # Every other artifact but runner's records of the job environment (RUNNER_ENV_FILES).
        self.other_artifacts = dict(
            (os.path.relpath(os.path.join(root, name), artifacts), _read(os.path.join(root, name)))
            for root, _dirs, names in os.walk(artifacts) for name in names
            if name not in RUNNER_ENV_FILES and root != os.path.join(artifacts, 'job_events'))

    def __repr__(self):
        return 'Job(status=%s rc=%s failures=%r items=%r)\n%s' % (
            self.status, self.rc, self.failures(), self.failed_items(), self.stdout.replace('\r', '')[-4000:])

    @property
    def artifacts(self):
        """What set_stats stored for the job (AWX: the job's artifacts, passed on in a workflow)."""
        stats = [e for e in self.events if e['event'] == 'playbook_on_stats']
        return stats[-1]['event_data'].get('artifact_data', {}) if stats else {}

    def results(self, task, event=None):
        """Event data (``res``) of a task's host results, by task name."""
        return [e['event_data'] for e in self.events
                if e['event'].startswith('runner_on_') and e['event_data'].get('task') == task
                and (event is None or e['event'] == event)]

    def changed(self, task):
        """Whether the task acted on some host (shown as ``changed`` in the job output)."""
        return any(r['res'].get('changed') for r in self.results(task, 'runner_on_ok'))

    def failures(self):
        """(host, message) of every failed task that was not ignored."""
        return [(e['event_data']['host'], e['event_data']['res'].get('msg', ''))
                for e in self.events if e['event'] == 'runner_on_failed' and not e['event_data'].get('ignore_errors')]

    def failed_items(self):
        """(task, host, message) of every failed loop item."""
        return [(e['event_data'].get('task'), e['event_data']['host'], e['event_data']['res'].get('msg', ''))
                for e in self.events if e['event'] == 'runner_item_on_failed']

    @property
    def prompted(self):
        return 'Apply the fix?' in self.stdout or any(
            e['event'] == 'runner_on_ok' and e['event_data'].get('task_action') == 'ansible.builtin.pause'
            for e in self.events)


def _read(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.read().strip()
    except OSError:
        return ''


def _kill_leftovers(private_dir):
    """A timed-out job leaves ansible-playbook running (runner does not kill it): end ours, by pid."""
    for proc in psutil.process_iter(['pid', 'cmdline']):
        try:
            if any(private_dir in part for part in proc.info['cmdline'] or ()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def inventory_for(connections, extra_vars=None):
    """The example project's inventory with its connection settings replaced (dict of group_vars)."""
    with open(os.path.join(EXAMPLE_PROJECT, 'inventory', 'group_vars', 'all', 'cerniq.yml')) as handle:
        group_vars = yaml.safe_load(handle)
    group_vars.update(connections)
    group_vars.update(extra_vars or {})
    return group_vars


def run_job(playbook, connections, extravars=None, envvars=None, secrets=(), collections_path=None,
            container_image=None, timeout=600, project=EXAMPLE_PROJECT):
    """Run ``playbook`` (a file of ``project``) with ansible-runner; returns a Job.

    connections: group_vars written into the example inventory (cerniq_postgres, cerniq_redis, ...);
    collections_path: where the collection is installed (host runs); container_image: run with
    --process-isolation in that image (the collection comes from the image).
    """
    private_dir = tempfile.mkdtemp(prefix='cerniq-awx-job-')
    ident = 'cerniq-ee-%s' % uuid.uuid4().hex[:12]
    try:
        shutil.copytree(project, os.path.join(private_dir, 'project'), ignore=shutil.ignore_patterns('inventory'))
        shutil.copytree(os.path.join(project, 'inventory'), os.path.join(private_dir, 'inventory'))
        with open(os.path.join(private_dir, 'inventory', 'group_vars', 'all', 'cerniq.yml'), 'w') as handle:
            yaml.safe_dump(inventory_for(connections), handle)
        os.makedirs(os.path.join(private_dir, 'env'))
        _write(private_dir, 'env/extravars', json.dumps(extravars or {}))
        _write(private_dir, 'env/envvars', json.dumps(dict({'ANSIBLE_NOCOLOR': '1'}, **(envvars or {}))))
        _write(private_dir, 'env/settings', json.dumps({'idle_timeout': IDLE_TIMEOUT, 'job_timeout': timeout}))
        cmd = [os.path.join(VENV_BIN, 'ansible-runner'), 'run', private_dir, '-p', playbook, '--ident', ident]
        env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get('PATH', ''),
                   CONTAINERS_CONF=os.environ.get('CONTAINERS_CONF', CONTAINERS_CONF))
        env.pop('ANSIBLE_COLLECTIONS_PATH', None)
        if container_image:
            # As AWX runs a job in its execution environment. The throwaway servers listen on the host's
            # loopback: the container shares the host network. Container names start with cerniq-ee-.
            cmd += ['--process-isolation', '--process-isolation-executable', 'podman',
                    '--container-image', container_image,
                    '--container-option=--network=host', '--container-option=--name=%s' % ident]
        else:
            env['ANSIBLE_COLLECTIONS_PATH'] = collections_path
        started = time.monotonic()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=timeout + 60, check=False)
        job = Job(private_dir, ident, time.monotonic() - started)
    finally:
        _kill_leftovers(private_dir)
        if container_image:
            subprocess.run(['podman', 'rm', '-f', '-t', '0', ident], env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(private_dir, ignore_errors=True)
    assert job.status != 'timeout', 'the job waited for input until runner timed it out: %r' % job
    assert not job.prompted, 'the job asked a question: %r' % job
    for secret in secrets:
        assert secret not in job.stdout, 'a secret is in the job output'
        assert not any(secret in text for text in job.event_texts), 'a secret is in the job events'
        leaks = sorted(name for name, text in job.other_artifacts.items() if secret in text)
        assert not leaks, 'a secret is in the artifacts: %s' % leaks
    return job


def _write(private_dir, name, text):
    path = os.path.join(private_dir, name)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, 0o600)
