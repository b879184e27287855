"""Throwaway PostgreSQL and Redis servers for tests, benchmarks and the local demo.

Each server runs from the machine's installed binaries, in its own temporary
directory, on a free loopback port, and is removed afterwards. Nothing here
touches the machine's default instances or a fixed port, so two runs on the
same machine never collide.

A server gets a process group of its own (the test kills the whole group), not a session: with
the kernel's autogroups each session is one CPU share, so servers in sessions of their own took
a share each from a loaded machine - `make test`'s integration lane took 43 % of both cores in
its first 16 minutes while the lab demo, the run's longest lane, got 6 %.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_SUPERUSER = 'postgres'
PG_APP_USER = 'cerniq'
PG_APP_PASSWORD = 'cerniq-test-secret'


def free_port():
    """A TCP port that is free on 127.0.0.1 right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _cluster_port():
    """A free port whose cluster bus port (port + 10000) is a valid port and free as well."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(('127.0.0.1', port + 10000))
            except OSError:
                continue
        return port


def _wait_for_port(port, timeout, proc=None, what='server'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('%s exited with code %s' % (what, proc.returncode))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('%s did not listen on port %s within %ss' % (what, port, timeout))


def _pg_bindir():
    for candidate in ('/usr/lib/postgresql/15/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/17/bin'):
        if os.path.exists(os.path.join(candidate, 'postgres')):
            return candidate
    found = shutil.which('pg_ctl')
    if found:
        return os.path.dirname(os.path.realpath(found))
    raise RuntimeError('PostgreSQL server binaries not found: apt-get install postgresql')


class PostgresServer:
    """A PostgreSQL cluster in a temp dir. As root it runs as the ``postgres`` OS user."""

    def __init__(self, settings=None):
        self.bindir = _pg_bindir()
        self.settings = dict(settings or {})
        self.port = None
        self.base = None
        self.proc = None

    @property
    def datadir(self):
        return os.path.join(self.base, 'data')

    @property
    def socket_dir(self):
        return self.base

    def _as_owner(self):
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwnam('postgres')
        return entry.pw_uid, entry.pw_gid

    def _run(self, args, **kwargs):
        owner = self._as_owner()
        if owner:
            kwargs.setdefault('user', owner[0])
            kwargs.setdefault('group', owner[1])
        return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)

    def start(self):
        self.base = tempfile.mkdtemp(prefix='cerniq-pg-')
        owner = self._as_owner()
        if owner:
            os.chown(self.base, *owner)
        os.chmod(self.base, 0o755)
        pwfile = os.path.join(self.base, 'pw')
        with open(pwfile, 'w') as handle:
            handle.write('postgres-test-secret\n')
        if owner:
            os.chown(pwfile, *owner)
        self._run([os.path.join(self.bindir, 'initdb'), '-D', self.datadir, '-U', PG_SUPERUSER,
                   '--auth-local=trust', '--auth-host=scram-sha-256', '--pwfile', pwfile,
                   '-E', 'UTF8', '--locale=C.UTF-8'])
        settings = {
            'fsync': 'off', 'synchronous_commit': 'off', 'full_page_writes': 'off',
            'max_connections': '100', 'shared_buffers': '128MB',
            'unix_socket_directories': "'%s'" % self.socket_dir,
            'listen_addresses': "'127.0.0.1'",
            'shared_preload_libraries': "'pg_stat_statements'",
            'log_min_messages': 'warning',
        }
        settings.update(self.settings)
        with open(os.path.join(self.datadir, 'postgresql.auto.conf'), 'a') as handle:
            for key, value in settings.items():
                handle.write('%s = %s\n' % (key, value))
        for attempt in range(5):
            self.port = free_port()
            log = open(os.path.join(self.base, 'server.log'), 'ab')
            kwargs = {}
            if owner:
                kwargs = dict(user=owner[0], group=owner[1])
            self.proc = subprocess.Popen(
                [os.path.join(self.bindir, 'postgres'), '-D', self.datadir, '-p', str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, process_group=0, **kwargs)
            try:
                _wait_for_port(self.port, 30, self.proc, 'postgres')
                break
            except RuntimeError:
                self._kill()
                if attempt == 4:
                    raise
        self._wait_ready()
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (PG_APP_USER, PG_APP_PASSWORD))
        self.psql('CREATE DATABASE cerniq OWNER %s' % PG_APP_USER)
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run([os.path.join(self.bindir, 'pg_isready'), '-h', self.socket_dir,
                                     '-p', str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    check=False)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError('postgres not ready')
            time.sleep(0.1)

    def psql(self, sql, database='postgres'):
        return self._run([os.path.join(self.bindir, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
                          '-h', self.socket_dir, '-p', str(self.port), '-U', PG_SUPERUSER, '-d', database,
                          '-c', sql]).stdout.decode()

    def params(self, database='cerniq', superuser=False):
        """Module-style connection params (TCP, password auth)."""
        if superuser:
            return dict(login_host='127.0.0.1', login_port=self.port, login_db=database,
                        login_user=PG_SUPERUSER, login_password='postgres-test-secret')
        return dict(login_host='127.0.0.1', login_port=self.port, login_db=database,
                    login_user=PG_APP_USER, login_password=PG_APP_PASSWORD)

    def dsn(self, database='cerniq', superuser=False):
        p = self.params(database, superuser)
        return 'host=%s port=%s dbname=%s user=%s password=%s' % (
            p['login_host'], p['login_port'], p['login_db'], p['login_user'], p['login_password'])

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGQUIT)
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def stop(self):
        self._kill()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RedisServer:
    """A redis-server in a temp dir on a free loopback port (no persistence)."""

    def __init__(self, password=None, extra_args=(), cluster=False):
        self.password = password
        self.extra_args = list(extra_args)
        self.cluster = cluster
        self.port = None
        self.base = None
        self.proc = None

    def start(self):
        binary = shutil.which('redis-server')
        if not binary:
            raise RuntimeError('redis-server not found: apt-get install redis-server')
        self.base = tempfile.mkdtemp(prefix='cerniq-redis-')
        for attempt in range(5):
            self.port = _cluster_port() if self.cluster else free_port()
            args = [binary, '--port', str(self.port), '--bind', '127.0.0.1', '--dir', self.base,
                    '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning',
                    '--logfile', os.path.join(self.base, 'redis.log')]
            if self.password:
                # Passed through a config file so it never shows in the process list.
                conf = os.path.join(self.base, 'auth.conf')
                with open(conf, 'w') as handle:
                    handle.write('requirepass "%s"\n' % self.password)
                os.chmod(conf, 0o600)
                args = [binary, conf] + args[1:]
            if self.cluster:
                args += ['--cluster-enabled', 'yes', '--cluster-config-file',
                         os.path.join(self.base, 'nodes.conf'), '--cluster-node-timeout', '15000']
            args += self.extra_args
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         process_group=0)
            try:
                _wait_for_port(self.port, 10, self.proc, 'redis-server')
                return self
            except RuntimeError:
                self._kill()
                if attempt == 4:
                    raise
        return self

    def params(self, **extra):
        params = dict(redis_host='127.0.0.1', redis_port=self.port)
        if self.password:
            params['redis_password'] = self.password
        params.update(extra)
        return params

    def client(self, **kwargs):
        import redis
        return redis.Redis(host='127.0.0.1', port=self.port, password=self.password, **kwargs)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self):
        self._kill()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RedisCluster:
    """A local 3-master Redis Cluster (no replicas) on free loopback ports."""

    def __init__(self, nodes=3):
        self.nodes = [RedisServer(cluster=True) for _index in range(nodes)]

    def start(self):
        for node in self.nodes:
            node.start()
        addresses = ['127.0.0.1:%d' % node.port for node in self.nodes]
        subprocess.run([shutil.which('redis-cli'), '--cluster', 'create'] + addresses + ['--cluster-yes'],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60)
        # Every node, not only the first: a client is redirected to the node that holds its key's slot,
        # and a node still converging answers CLUSTERDOWN (seen under load).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all('cluster_state:ok' in subprocess.run(
                    [shutil.which('redis-cli'), '-p', str(node.port), 'cluster', 'info'],
                    stdout=subprocess.PIPE, check=True).stdout.decode() for node in self.nodes):
                return self
            time.sleep(0.2)
        raise RuntimeError('redis cluster did not reach cluster_state:ok on every node')

    @property
    def port(self):
        return self.nodes[0].port

    def params(self, **extra):
        params = dict(redis_host='127.0.0.1', redis_port=self.nodes[0].port, redis_cluster=True)
        params.update(extra)
        return params

    def stop(self):
        for node in self.nodes:
            node.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
