#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: worker_container
short_description: Restart a CERNIQ worker container so that changed settings take effect
description:
  - Runbook 2.2 steps 3 and 4 (lower C(ANAF_CONCURRENCY)/C(TERMENE_CONCURRENCY), restart the workers) for
    workers run by docker or podman. C(docker restart) and C(podman restart) keep the environment the container
    was created with, so with O(env) the container is re-created instead.
  - A container that compose manages (its C(com.docker.compose.*) labels) is re-created by compose -
    C(<compose_command> -p <project> -f <files> up -d --no-deps --force-recreate <service>) in its project
    directory - which reads its env file again; the settings must come from that env file.
  - A podman container is re-created from the command podman recorded at its creation
    (C(Config.CreateCommand)), with C(--env KEY=VALUE) for each entry of O(env) added after C(run).
  - A docker container is re-created through the Docker Engine API (O(docker_host)) from its own inspect data -
    the same image id, C(HostConfig) and networks - with O(env) replacing those variables in its C(Env).
  - The old container is renamed (C(<name>-cerniq-old)) and stopped first and removed only once the new one
    runs; when the new one cannot be created or started the old one gets its name back and is started again.
  - Afterwards the running container is read back - it must run and hold every O(env) value; otherwise the
    task fails naming the settings that did not arrive (for example a C(-e) on the container's own command
    line, or an inline compose C(environment) entry, that overrides the env file).
  - A container run by a systemd unit (label C(PODMAN_SYSTEMD_UNIT)) is refused (restart the unit), and so is a
    C(--rm) container when it would have to be re-created (stopping it removes it).
  - Without O(env), or with O(state=present) and nothing to change, the container is restarted
    (O(state=restarted)) or left alone (O(state=present)).
version_added: 1.0.0
author: cerniq.ops contributors (@cerniq)
attributes:
  check_mode:
    support: full
    description: Reports the method and the settings that differ; nothing is stopped or created.
  diff_mode:
    support: none
    description: RV(differing) lists the settings that change.
options:
  name:
    description: The worker container's name.
    type: str
    required: true
  runtime:
    description: The container engine running it.
    type: str
    choices: [docker, podman]
    required: true
  env:
    description:
      - Settings the running worker must have, C(KEY=VALUE) each (for example C(ANAF_CONCURRENCY=1)).
      - Write them into the worker's env file first (compose re-reads it; for podman and docker containers the
        values are set on the new container directly).
    type: list
    elements: str
    default: []
  state:
    description:
      - V(restarted) always restarts (re-creates when O(env) is given); V(present) re-creates only when a value of
        O(env) differs in the container, and reports no change otherwise.
    type: str
    choices: [restarted, present]
    default: restarted
  stop_timeout:
    description: How long the old container gets to stop, with a unit (C(10s), C(2m)); 0s to 1h.
    type: str
    default: 10s
  docker_host:
    description: The Docker Engine API socket (C(unix://) only); default C(DOCKER_HOST), else C(unix:///var/run/docker.sock).
    type: str
  podman_path:
    description: The podman program.
    type: str
    default: podman
  compose_command:
    description:
      - The compose program for containers compose manages; default C([docker, compose]) for docker and
        C([podman-compose]) for podman.
    type: list
    elements: str
'''

EXAMPLES = r'''
- name: Lower the enrichment concurrency (runbook 2.2 step 3) and restart the worker
  cerniq.ops.worker_container:
    name: cerniq-workers-enrichment
    runtime: podman
    env: [ANAF_CONCURRENCY=1, TERMENE_CONCURRENCY=5]
  register: worker

- name: A docker worker, only when its settings differ
  cerniq.ops.worker_container:
    name: cerniq-workers-enrichment
    runtime: docker
    env: [ANAF_CONCURRENCY=1]
    state: present
'''

RETURN = r'''
method:
  description:
    - How the worker was (or would be) restarted - V(recreated) (podman or docker re-creation), V(compose)
      (compose up), V(restarted) (a plain restart, no O(env)) or V(none) (O(state=present), nothing differs).
  returned: always
  type: str
  sample: recreated
container_id:
  description: The id of the container running now (the new one after a re-creation).
  returned: always
  type: str
previous_container_id:
  description: The id of the container before the run.
  returned: always
  type: str
differing:
  description: The keys of O(env) whose value differed in the container before the run.
  returned: always
  type: list
  elements: str
  sample: [ANAF_CONCURRENCY]
env:
  description: The O(env) keys with their value in the running container (read back after the restart).
  returned: always
  type: dict
  sample: {ANAF_CONCURRENCY: '1'}
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, parse_duration
from ansible_collections.cerniq.ops.plugins.module_utils.worker_container import (
    DockerApi, PodmanCli, WorkerError, parse_env, restart_worker)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            runtime=dict(type='str', choices=['docker', 'podman'], required=True),
            env=dict(type='list', elements='str', default=[]),
            state=dict(type='str', choices=['restarted', 'present'], default='restarted'),
            stop_timeout=dict(type='str', default='10s'),
            docker_host=dict(type='str'),
            podman_path=dict(type='str', default='podman'),
            compose_command=dict(type='list', elements='str'),
        ),
        supports_check_mode=True)
    p = module.params

    def run(argv, cwd=None):
        if not argv[0].strip() or module.get_bin_path(argv[0]) is None:
            raise WorkerError('program not found: %r' % argv[0])
        if cwd is not None and not os.path.isdir(cwd):
            raise WorkerError('compose project directory %s does not exist' % cwd)
        return module.run_command(argv, cwd=cwd)

    try:
        if not p['name'].strip() or '/' in p['name'] or p['name'] != p['name'].strip():
            raise WorkerError('name must be a container name, got %r' % p['name'])
        parse_env(p['env'])
        timeout = parse_duration(p['stop_timeout'], 'stop_timeout')
        if not 0 <= timeout <= 3600:
            raise WorkerError('stop_timeout must be between 0s and 1h, got %s' % p['stop_timeout'])
        if p['compose_command'] is not None and not [word for word in p['compose_command'] if word.strip()]:
            raise WorkerError('compose_command must not be empty')
        if p['runtime'] == 'docker':
            runtime = DockerApi(p['docker_host'] or os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock')
            compose = p['compose_command'] or ['docker', 'compose']
        else:
            runtime = PodmanCli(run, p['podman_path'])
            compose = p['compose_command'] or ['podman-compose']
        result = restart_worker(runtime, run, p['name'], p['env'], p['state'], timeout, compose,
                                check_mode=module.check_mode)
    except WorkerError as error:
        module.fail_json(msg=str(error), **(error.result or {}))
    except DurationError as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
