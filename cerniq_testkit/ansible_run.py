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
import subprocess
import sys
import tempfile

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
    # The arguments (which may hold passwords) and the module's temp dir: private, removed afterwards.
    with tempfile.TemporaryDirectory(prefix='cerniq-module-') as scratch:
        if '_ansible_tmpdir' not in module_args:
            module_args['_ansible_tmpdir'] = os.path.join(scratch, 'tmp')
            os.mkdir(module_args['_ansible_tmpdir'])
        args_file = os.path.join(scratch, 'args.json')
        with open(args_file, 'w') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': module_args}, handle)
        proc = subprocess.run(
            [sys.executable, '-m', 'ansible_collections.cerniq.ops.plugins.modules.%s' % name, args_file],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run_env, timeout=timeout, check=False)
    stdout = proc.stdout.decode('utf-8', 'replace')
    result = ModuleResult()
    try:
        result.update(json.loads(stdout[stdout.index('{'):]))
    except ValueError:
        result.update(failed=True, msg='module printed no JSON: %s' % proc.stderr.decode('utf-8', 'replace')[-2000:],
                      stdout=stdout)
    result.rc = proc.returncode
    result.stderr = proc.stderr.decode('utf-8', 'replace')
    return result


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
