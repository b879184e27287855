"""Run the collection's real modules and playbooks from tests.

``run_module`` executes a module file the way Ansible does on a target (a
Python process reading ``ANSIBLE_MODULE_ARGS``), so tests exercise the real
argument parsing, check mode, diff and ``fail_json`` paths. ``run_playbook``
runs ``ansible-playbook`` from the project venv against localhost.
Both see the repository as ``ansible_collections/cerniq/ops`` through a
symlinked tree made once per process.
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
_TREE = {}


def collections_root():
    """A temp dir holding ``ansible_collections/cerniq/ops`` -> the repository."""
    if 'root' not in _TREE:
        root = tempfile.mkdtemp(prefix='cerniq-collections-')
        atexit.register(shutil.rmtree, root, True)  # removes the symlink, never the repository behind it
        os.makedirs(os.path.join(root, 'ansible_collections', 'cerniq'))
        os.symlink(REPO, os.path.join(root, 'ansible_collections', 'cerniq', 'ops'))
        _TREE['root'] = root
    return _TREE['root']


class ModuleResult(dict):
    """The module's JSON result, plus its exit code and stderr."""

    rc = 0
    stderr = ''

    @property
    def failed(self):
        return bool(self.get('failed')) or self.rc != 0


def run_module(name, args, check_mode=False, diff=False, env=None, timeout=600):
    """Run ``cerniq.ops.<name>`` with ``args``; returns a ModuleResult (never raises on failure)."""
    module_args = dict(args)
    module_args['_ansible_check_mode'] = check_mode
    module_args['_ansible_diff'] = diff
    module_args.setdefault('_ansible_remote_tmp', tempfile.gettempdir())
    module_args.setdefault('_ansible_keep_remote_files', False)
    run_env = dict(os.environ)
    run_env['PYTHONPATH'] = collections_root()
    run_env.update(env or {})
    module = 'ansible_collections.cerniq.ops.plugins.modules.%s' % name
    # The arguments (which may hold passwords) and the module's temp dir: private, removed afterwards.
    with tempfile.TemporaryDirectory(prefix='cerniq-module-') as scratch:
        if '_ansible_tmpdir' not in module_args:
            module_args['_ansible_tmpdir'] = os.path.join(scratch, 'tmp')
            os.mkdir(module_args['_ansible_tmpdir'])
        args_file = os.path.join(scratch, 'args.json')
        with open(args_file, 'w') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': module_args}, handle)
        if _forkable(env):
            rc, stdout, stderr = _FORK_SERVER.run(module, args_file, run_env, scratch, timeout)
        else:
            proc = subprocess.run([sys.executable, '-m', module, args_file], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=run_env, timeout=timeout, check=False)
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    stdout = stdout.decode('utf-8', 'replace')
    result = ModuleResult()
    try:
        result.update(json.loads(stdout[stdout.index('{'):]))
    except ValueError:
        result.update(failed=True, msg='module printed no JSON: %s' % stderr.decode('utf-8', 'replace')[-2000:],
                      stdout=stdout)
    result.rc = rc
    result.stderr = stderr.decode('utf-8', 'replace')
    return result


def _forkable(env):
    """A module may run as a child of the warm fork server unless the test changes how Python starts."""
    if os.environ.get('CERNIQ_TEST_FORK_SERVER', '1') == '0':
        return False
    return not any(key.startswith(('PYTHON', 'LC_')) or key in ('LANG', 'LANGUAGE') for key in (env or {}))


class _ForkServer(object):
    """The client of cerniq_testkit/forkserver.py: one server per test process, started on first use."""

    def __init__(self):
        self.proc = None
        self.lock = threading.Lock()

    def _start(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([collections_root(), REPO]))
        self.proc = subprocess.Popen([sys.executable, '-m', 'cerniq_testkit.forkserver'], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, cwd=REPO, text=True)
        if self.proc.stdout.readline().strip() != 'ready':
            raise RuntimeError('the fork server did not start')
        atexit.register(self._stop)

    def _stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)

    def run(self, module, args_file, env, scratch, timeout):
        """(exit code, stdout bytes, stderr bytes) of ``module`` run on ``args_file``, as a plain process would."""
        paths = dict((name, os.path.join(scratch, name)) for name in ('stdout', 'stderr', 'rc'))
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            self.proc.stdin.write(json.dumps(dict(module=module, args_file=args_file, env=env, cwd=os.getcwd(),
                                                  stdout=paths['stdout'], stderr=paths['stderr'],
                                                  rc_file=paths['rc'])) + '\n')
            self.proc.stdin.flush()
            pid = int(self.proc.stdout.readline())
        deadline = time.monotonic() + timeout
        delay = 0.001
        while not os.path.exists(paths['rc']):
            if not _alive(pid):
                rc = None if os.path.exists(paths['rc']) else -signal.SIGKILL  # killed (the OOM killer, say)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired([module, args_file], timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        else:
            rc = None
        if rc is None:
            with open(paths['rc']) as handle:
                rc = int(handle.read())
        outputs = []
        for name in ('stdout', 'stderr'):
            with open(paths[name], 'rb') as handle:
                outputs.append(handle.read())
        return rc, outputs[0], outputs[1]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


_FORK_SERVER = _ForkServer()


def run_playbook(playbook, extra_vars=None, inventory=None, check=False, diff=False, env=None,
                 extra_args=(), timeout=1800):
    """Run ansible-playbook on localhost (local connection); returns CompletedProcess with text output.

    Its inventory, extra-vars file (which may hold passwords) and Ansible's local temp dir live in
    one private directory, removed when the run ends.
    """
    with tempfile.TemporaryDirectory(prefix='cerniq-ansible-') as scratch:
        if inventory is None:
            inventory = os.path.join(scratch, 'inventory.yml')
            with open(inventory, 'w') as handle:
                handle.write('all:\n  hosts:\n    localhost:\n      ansible_connection: local\n'
                             '      ansible_python_interpreter: %s\n' % sys.executable)
        cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', inventory, playbook]
        if extra_vars:
            vars_file = os.path.join(scratch, 'extra-vars.json')
            with open(vars_file, 'w') as handle:
                json.dump(extra_vars, handle)
            cmd += ['-e', '@' + vars_file]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        cmd += list(extra_args)
        run_env = dict(os.environ)
        run_env.update({
            'ANSIBLE_COLLECTIONS_PATH': collections_root(),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_RETRY_FILES_ENABLED': 'False',
            'ANSIBLE_LOCAL_TEMP': os.path.join(scratch, 'tmp'),
        })
        run_env.update(env or {})
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=run_env,
                              timeout=timeout, text=True, cwd=REPO, check=False)
