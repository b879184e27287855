"""Run the collection's real modules and playbooks from tests.

``run_module`` executes a module file the way Ansible does on a target (a
Python process reading ``ANSIBLE_MODULE_ARGS``), so tests exercise the real
argument parsing, check mode, diff and ``fail_json`` paths. ``run_playbook``
runs ``ansible-playbook`` from the project venv against localhost.
Both see the repository as ``ansible_collections/cerniq/ops`` through a
symlinked tree made once per process.
"""

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
_TREE = {}


def collections_root():
    """A temp dir holding ``ansible_collections/cerniq/ops`` -> the repository."""
    if 'root' not in _TREE:
        root = tempfile.mkdtemp(prefix='cerniq-collections-')
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
    module_args.setdefault('_ansible_tmpdir', tempfile.mkdtemp(prefix='cerniq-module-'))
    module_args.setdefault('_ansible_keep_remote_files', False)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': module_args}, handle)
        args_file = handle.name
    run_env = dict(os.environ)
    run_env['PYTHONPATH'] = collections_root()
    run_env.update(env or {})
    try:
        proc = subprocess.run(
            [sys.executable, '-m', 'ansible_collections.cerniq.ops.plugins.modules.%s' % name, args_file],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run_env, timeout=timeout, check=False)
    finally:
        os.unlink(args_file)
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
    """Run ansible-playbook on localhost (local connection); returns CompletedProcess with text output."""
    if inventory is None:
        inventory_file = tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False)
        inventory_file.write('all:\n  hosts:\n    localhost:\n      ansible_connection: local\n'
                             '      ansible_python_interpreter: %s\n' % sys.executable)
        inventory_file.close()
        inventory = inventory_file.name
    cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', inventory, playbook]
    if extra_vars:
        vars_file = tempfile.NamedTemporaryFile('w', suffix='.json', delete=False)
        json.dump(extra_vars, vars_file)
        vars_file.close()
        cmd += ['-e', '@' + vars_file.name]
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
        'ANSIBLE_LOCAL_TEMP': tempfile.mkdtemp(prefix='cerniq-ansible-'),
    })
    run_env.update(env or {})
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=run_env,
                          timeout=timeout, text=True, cwd=REPO, check=False)
