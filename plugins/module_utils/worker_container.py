# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restart a worker container so that a changed environment takes effect (runbook 2.2 steps 3-4).

``docker restart`` and ``podman restart`` keep the environment the container was created with, so a
worker whose settings changed (``ANAF_CONCURRENCY=1``) is re-created:

- a container that compose manages (its ``com.docker.compose.*`` labels) is re-created by compose,
  ``<compose> -p <project> -f <files> up -d --no-deps --force-recreate <service>`` in its working
  directory: compose reads the env file again;
- a podman container is re-created from the command podman recorded when it was created
  (``Config.CreateCommand``), with ``--env KEY=VALUE`` for each setting added after ``run``;
- a docker container is re-created through the Engine API from its own inspect data (``Config``,
  ``HostConfig``, its networks), the same image id, ``Env`` with the settings replaced.

The old container is renamed and stopped first and removed only once the new one runs; when the
new one cannot be created or started, it is removed and the old one gets its name back and is
started again, so the worker is never lost. Afterwards the running container's environment is
read back: a setting that did not arrive (set again later on the container's own command line, or
inline in the compose file) fails with a message naming it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client as http_client
import json
import socket

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError

COMPOSE_PROJECT = 'com.docker.compose.project'
COMPOSE_SERVICE = 'com.docker.compose.service'
COMPOSE_DIR = 'com.docker.compose.project.working_dir'
COMPOSE_FILES = 'com.docker.compose.project.config_files'
SYSTEMD_UNIT = 'PODMAN_SYSTEMD_UNIT'
OLD_SUFFIX = '-cerniq-old'
DOCKER_API = '/v1.41'


class WorkerError(EngineError):
    """A one-line reason the worker could not be (re)started; nothing was left half done. ``result``: the
    module's result when the worker was already stopped or re-created (``changed`` true), else empty."""


def _last_line(text, rc):
    lines = (text or '').strip().splitlines()
    return lines[-1] if lines else 'exit code %s' % rc


def parse_env(entries):
    """``['KEY=VALUE', ...]`` as an ordered list of ``(key, value)``; refuses a malformed entry."""
    pairs = []
    for entry in entries or []:
        key, sep, value = str(entry).partition('=')
        if not sep or not key or not key.replace('_', 'A').isalnum() or key[0].isdigit():
            raise WorkerError('env entries must be KEY=VALUE with a variable name as KEY, got %r' % entry)
        if '\n' in value or '\x00' in value:
            raise WorkerError('env value of %s must be one line without NUL bytes' % key)
        pairs = [(k, v) for k, v in pairs if k != key] + [(key, value)]
    return pairs


def env_dict(info):
    return dict(item.split('=', 1) for item in (info.get('Config') or {}).get('Env') or [] if '=' in item)


def differing(info, pairs):
    """The keys of ``pairs`` whose value in the container differs (or that it lacks)."""
    current = env_dict(info)
    return [key for key, value in pairs if current.get(key) != value]


def compose_labels(info):
    labels = (info.get('Config') or {}).get('Labels') or {}
    if all(labels.get(key) for key in (COMPOSE_PROJECT, COMPOSE_SERVICE, COMPOSE_FILES)):
        return dict(project=labels[COMPOSE_PROJECT], service=labels[COMPOSE_SERVICE],
                    files=[f for f in labels[COMPOSE_FILES].split(',') if f], directory=labels.get(COMPOSE_DIR))
    return None


class PodmanCli(object):
    """The podman command line; ``run(argv, cwd=None) -> (rc, stdout, stderr)``."""

    def __init__(self, run, binary='podman'):
        self.run, self.binary = run, binary

    def _call(self, *args):
        rc, out, err = self.run([self.binary] + list(args))
        if rc != 0:
            raise WorkerError('%s %s: %s' % (self.binary, args[0], _last_line(err or out, rc)))
        return out

    def inspect(self, name):
        rc, out, err = self.run([self.binary, 'container', 'inspect', name])
        if rc != 0:
            if 'no such' in (err or '').lower():
                return None
            raise WorkerError('%s container inspect: %s' % (self.binary, _last_line(err or out, rc)))
        return json.loads(out)[0]

    def rename(self, old, new):
        self._call('rename', old, new)

    def stop(self, name, timeout):
        self._call('stop', '--time', str(int(timeout)), name)

    def start(self, name):
        self._call('start', name)

    def restart(self, name, timeout):
        self._call('restart', '--time', str(int(timeout)), name)

    def remove(self, name):
        self._call('rm', '--force', '--time', '0', name)

    def create(self, info, pairs):
        """Run the recorded create command again with ``--env`` for each setting; returns the new id."""
        command = (info.get('Config') or {}).get('CreateCommand') or []
        verbs = [i for i, word in enumerate(command[:4]) if word in ('run', 'create')]
        if not verbs:
            raise WorkerError('podman recorded no create command for %s (created through the API?): '
                              're-create it with the new settings yourself' % info.get('Name'))
        at = verbs[0]
        extra = (['--detach'] if command[at] == 'run' else []) + [
            '--env=%s=%s' % pair for pair in pairs]
        out = self._call(*(command[1:at + 1] + extra + command[at + 1:]))
        if command[at] == 'create':
            self.start(info['Name'].lstrip('/'))
        return out.strip().splitlines()[-1] if out.strip() else None


class UnixHTTPConnection(http_client.HTTPConnection):
    def __init__(self, path, timeout):
        http_client.HTTPConnection.__init__(self, 'localhost', timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class DockerApi(object):
    """The Docker Engine API on a unix socket (``unix:///var/run/docker.sock``)."""

    def __init__(self, host, timeout=60):
        if not host.startswith('unix://'):
            raise WorkerError('docker_host must be a unix:// socket, got %r' % host)
        self.path, self.timeout = host[len('unix://'):], timeout

    def request(self, method, path, body=None, ok=(200, 201, 204, 304)):
        conn = UnixHTTPConnection(self.path, self.timeout)
        try:
            payload = json.dumps(body) if body is not None else None
            conn.request(method, DOCKER_API + path, payload, {'Content-Type': 'application/json'} if payload else {})
            answer = conn.getresponse()
            status, raw = answer.status, answer.read()
        except (OSError, http_client.HTTPException) as error:
            raise WorkerError('Docker API at %s: %s' % (self.path, error))
        finally:
            conn.close()
        try:
            data = json.loads(raw.decode('utf-8')) if raw.strip() else None
        except ValueError:
            data = None
        if status not in ok:
            message = data.get('message') if isinstance(data, dict) else raw.decode('utf-8', 'replace')
            raise WorkerError('Docker API %s %s: HTTP %d %s' % (method, path.split('?')[0], status, message))
        return status, data

    def inspect(self, name):
        status, data = self.request('GET', '/containers/%s/json' % name, ok=(200, 404))
        return data if status == 200 else None

    def rename(self, old, new):
        self.request('POST', '/containers/%s/rename?name=%s' % (old, new))

    def stop(self, name, timeout):
        self.request('POST', '/containers/%s/stop?t=%d' % (name, int(timeout)))

    def start(self, name):
        self.request('POST', '/containers/%s/start' % name)

    def restart(self, name, timeout):
        self.request('POST', '/containers/%s/restart?t=%d' % (name, int(timeout)))

    def remove(self, name):
        self.request('DELETE', '/containers/%s?force=true' % name)

    def create(self, info, pairs):
        """Create and start a container like ``info`` with the settings in its ``Env``; returns its id."""
        name = info['Name'].lstrip('/')
        config = dict(info['Config'])
        keys = set(key for key, _value in pairs)
        env = [item for item in config.get('Env') or [] if item.split('=', 1)[0] not in keys]
        if config.get('Hostname') == info['Id'][:12]:   # a generated host name belongs to the old container
            config.pop('Hostname')
            env = [item for item in env if item != 'HOSTNAME=%s' % info['Id'][:12]]
        config['Env'] = env + ['%s=%s' % pair for pair in pairs]
        config['Image'] = info['Image']   # the same image, not whatever the tag names now
        networks = ((info.get('NetworkSettings') or {}).get('Networks') or {})
        endpoints = dict((net, dict((key, value) for key, value in (endpoint or {}).items()
                                    if key in ('IPAMConfig', 'Links', 'Aliases', 'DriverOpts')))
                         for net, endpoint in networks.items())
        for endpoint in endpoints.values():
            endpoint['Aliases'] = [a for a in endpoint.get('Aliases') or [] if a != info['Id'][:12]] or None
        host = dict(info.get('HostConfig') or {})
        # podman's compatible API reports ulimits as RLIMIT_NOFILE but takes nofile, like Docker
        host['Ulimits'] = [dict(limit, Name=limit['Name'].lower().replace('rlimit_', '', 1))
                           for limit in host.get('Ulimits') or [] if limit.get('Name')] or None
        body = dict(config, HostConfig=host, NetworkingConfig=dict(EndpointsConfig=endpoints))
        _status, created = self.request('POST', '/containers/create?name=%s' % name, body)
        self.start(name)
        return created.get('Id') if isinstance(created, dict) else None


def compose_up(run, compose_command, labels):
    argv = list(compose_command) + ['-p', labels['project']]
    for path in labels['files']:
        argv += ['-f', path]
    argv += ['up', '-d', '--no-deps', '--force-recreate', labels['service']]
    rc, out, err = run(argv, cwd=labels['directory'] or None)
    if rc != 0:
        raise WorkerError('%s failed: %s' % (' '.join(argv), _last_line(err or out, rc)))


def _swap(runtime, info, pairs, stop_timeout):
    """Rename and stop the old container, create the new one; on any failure put the old one back."""
    name = info['Name'].lstrip('/')
    old = name + OLD_SUFFIX
    if runtime.inspect(old) is not None:
        raise WorkerError('a container named %s exists (an interrupted re-creation?): check it and remove it '
                          'before restarting %s' % (old, name))
    runtime.rename(name, old)
    try:
        runtime.stop(old, stop_timeout)
        runtime.create(info, pairs)
    except WorkerError as error:
        current = runtime.inspect(name)
        if current is not None and current['Id'] != info['Id']:
            runtime.remove(name)
        runtime.rename(old, name)
        if (info.get('State') or {}).get('Running'):
            runtime.start(name)
        raise WorkerError('%s could not be re-created (%s); the old container is back' % (name, error))
    runtime.remove(old)


def restart_worker(runtime, run, name, env=None, state='restarted', stop_timeout=10, compose_command=None,
                   check_mode=False):
    """Restart (or re-create) the worker container ``name`` so that ``env`` applies.

    ``runtime``: a ``PodmanCli`` or ``DockerApi``. ``state='present'`` only acts when a setting differs.
    Returns ``dict(changed, method, container_id, previous_container_id, env, differing)``.
    """
    pairs = parse_env(env)
    info = runtime.inspect(name)
    if info is None:
        raise WorkerError('no container named %s' % name)
    labels = (info.get('Config') or {}).get('Labels') or {}
    compose = compose_labels(info)
    # podman-compose labels its containers with a unit of its own: compose comes first
    if labels.get(SYSTEMD_UNIT) and not compose:
        raise WorkerError('%s is run by the systemd unit %s: restart that unit (kind systemd) instead'
                          % (name, labels[SYSTEMD_UNIT]))
    stale = differing(info, pairs)
    if state == 'present' and not stale:
        method = 'none'
    elif compose and pairs:
        method = 'compose'
    elif pairs:
        method = 'recreated'
        if (info.get('HostConfig') or {}).get('AutoRemove'):
            raise WorkerError('%s was started with --rm: stopping it would remove it; re-create it with the new '
                              'settings yourself' % name)
    else:
        method = 'restarted'
    result = dict(changed=method != 'none', method=method, previous_container_id=info['Id'],
                  container_id=info['Id'], differing=stale, env=dict(pairs))
    if check_mode or method == 'none':
        return result
    try:
        if method == 'compose':
            compose_up(run, compose_command, compose)
        elif method == 'recreated':
            _swap(runtime, info, pairs, stop_timeout)
        else:
            runtime.restart(name, stop_timeout)
        after = runtime.inspect(name)
        if after is None or not (after.get('State') or {}).get('Running'):
            raise WorkerError('%s is not running after the %s' % (name, method))
        current = env_dict(after)
        result.update(container_id=after['Id'], env=dict((key, current.get(key)) for key, _value in pairs))
        missing = differing(after, pairs)
        if missing:
            raise WorkerError('%s runs without the new settings: %s (its definition sets them after the env file: '
                              'change it there)' % (name, ', '.join('%s=%s' % (key, current.get(key, '(unset)'))
                                                                    for key in missing)))
    except WorkerError as error:
        error.result = result   # the worker was stopped or re-created: the failure says so (changed)
        raise
    return result
