# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""containers.podman.podman with pipelining, for the systemd containers of the Molecule scenarios and the lab.

Test infrastructure, not part of the collection's interface. containers.podman's connection
runs each task as six podman calls (mount, `echo ~`, mkdir, chmod, the module, rm), because it
declares no pipelining (https://github.com/containers/ansible-podman-collections/pull/275: old
podman dropped stdin). podman 4 passes stdin with `exec -i`, so here a task is one call: the
module goes to the container's python on stdin, as it does over SSH with pipelining, the way a
production controller reaches the hosts. Measured on the 2-core CI machine: 20 module runs in a
container took 23-25 CPU-seconds with containers.podman.podman and 9 with this plugin.
Files (copy, template) still go through the container's mounted filesystem as before.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: podman_pipelined
short_description: Run tasks in a podman container, modules piped to its python (podman exec -i)
description:
  - containers.podman.podman with pipelining; every other behaviour is that plugin's.
options:
  remote_addr:
    description: The container's name or ID.
    default: inventory_hostname
    vars:
      - name: ansible_host
      - name: inventory_hostname
      - name: ansible_podman_host
  remote_user:
    description: The user tasks run as inside the container (podman exec --user).
    vars:
      - name: ansible_user
  podman_extra_args:
    description: Extra arguments for the podman command line.
    default: ''
    vars:
      - name: ansible_podman_extra_args
  podman_executable:
    description: The podman executable.
    default: podman
    vars:
      - name: ansible_podman_executable
  pipelining:
    description: Pipe modules to the container's python instead of copying them in.
    type: boolean
    default: true
    vars:
      - name: ansible_pipelining
"""

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection


class Connection(PodmanConnection):

    transport = 'podman_pipelined'
    has_pipelining = True

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ['exec']
        if in_data is not None:
            args.append('--interactive')  # stdin reaches the command only with -i
        if self.user:
            args.extend(('--user', self.user))
        return self._podman(args, shlex.split(to_native(cmd, errors='surrogate_or_strict')), in_data)
