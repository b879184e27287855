"""A warm process that runs module processes by forking: the tests' ``run_module`` without the start-up.

A module run the way Ansible runs it on a target is a new Python process that imports
``ansible.module_utils.basic`` and its client library (psycopg2, redis) before it reads its
arguments: about 0.25 s of CPU each time, and the test suites run thousands. This server
imports those once, then for each request forks a child that becomes the module process:
the environment the test asked for, stdout and stderr to files, ``sys.argv`` naming the
arguments file, the module run as ``__main__`` (``runpy``), exit handlers run, its exit code
written to a file. The module's own code (``ansible_collections.cerniq.ops...``) is imported
in the child, fresh each time, so what a module reads at import time comes from the test's
environment.

Requests come one JSON line each on stdin; the answer is the child's pid on stdout. The
client (``cerniq_testkit.ansible_run.run_module``) waits for the exit-code file or for the
pid to be gone, so several modules may run at once (lock tests do that). Children are reaped
by the kernel (SIGCHLD ignored). Requests that change how Python starts (``PYTHONPATH``,
``PYTHON*``, locale variables) never come here: the client runs a plain process for them.
"""

import atexit
import json
import os
import runpy
import signal
import sys
import tempfile
import traceback

WARM_IMPORTS = ('ansible.module_utils.basic', 'psycopg2', 'psycopg2.extensions', 'psycopg2.extras', 'redis')


def _child(request):
    """Become the module process of ``request``; never returns."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(request['env'])
        tempfile.tempdir = None  # found again from this environment (TMPDIR)
        for fd, path in ((1, request['stdout']), (2, request['stderr'])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.stdin = open(os.devnull)
        sys.stdout = open(1, 'w', closefd=False)
        sys.stderr = open(2, 'w', closefd=False)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the module's own subprocesses are waited for
        os.chdir(request['cwd'])
        sys.argv = [request['module'], request['args_file']]
        try:
            runpy.run_module(request['module'], run_name='__main__', alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        except BaseException:  # noqa: BLE001 - a traceback, as a crashed module process prints it
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # pylint: disable=protected-access
        sys.stdout.flush()
        sys.stderr.flush()
        with open(request['rc_file'] + '.part', 'w') as handle:
            handle.write(str(code))
        os.rename(request['rc_file'] + '.part', request['rc_file'])
    finally:
        os._exit(code)


def main():
    for name in WARM_IMPORTS:
        try:
            __import__(name)
        except ImportError:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        sys.stdout.write('%d\n' % pid)
        sys.stdout.flush()


if __name__ == '__main__':
    main()
