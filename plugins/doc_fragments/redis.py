# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  redis_host:
    description: Host name or IP address of the Redis server (or of one cluster node).
    type: str
    default: localhost
  redis_port:
    description: TCP port of the Redis server, 1 to 65535.
    type: int
    default: 6379
  redis_db:
    description:
      - Database number, 0 or more (ignored for Redis Cluster).
      - A number above the server's C(databases) setting fails with a message saying so.
    type: int
    default: 0
  redis_username:
    description: ACL user name (Redis 6+); leave unset for the default user.
    type: str
  redis_password:
    description:
      - Password (or ACL password) of the Redis server. Never logged.
      - Falls back to the E(REDISCLI_AUTH) environment variable.
    type: str
  redis_tls:
    description: Connect with TLS.
    type: bool
    default: false
  redis_ca_certs:
    description:
      - CA certificate bundle used to verify the server with O(redis_tls).
      - With O(redis_tls), a missing or unreadable file (as for O(redis_client_cert) and O(redis_client_key)) fails
        before connecting, with a message naming the option and the file.
    type: path
  redis_validate_certs:
    description: Verify the server certificate and host name with O(redis_tls).
    type: bool
    default: true
  redis_client_cert:
    description: Client certificate for mutual TLS.
    type: path
  redis_client_key:
    description: Client private key for mutual TLS; needs O(redis_client_cert).
    type: path
  redis_socket_timeout:
    description:
      - How long to wait for a connection or a reply before failing with a clear error, a duration with a unit
        (C(5s), C(500ms)); more than 0 and at most C(1h). A number without a unit is refused.
    type: str
    default: 5s
  redis_sentinel_master:
    description: Name of a Sentinel-monitored master; when set, the master is found through O(redis_sentinel_nodes).
    type: str
  redis_sentinel_nodes:
    description: Sentinel nodes as C(host:port) (port 1 to 65535), used with O(redis_sentinel_master).
    type: list
    elements: str
    default: []
  redis_cluster:
    description:
      - Connect to a Redis Cluster through the node at O(redis_host):O(redis_port).
      - A server without cluster mode fails with a one-line message. Excludes O(redis_sentinel_master).
      - BullMQ queues on a cluster need a hash tag in their prefix (for example C({bull})).
    type: bool
    default: false
requirements:
  - redis (redis-py) on the host that runs the module
notes:
  - An unreachable server or a wrong password ends the task with a one-line message naming the
    server and the cause (unreachable, timed out, authentication, TLS certificate not trusted, TLS
    handshake, not a cluster node, no such database); the password never appears in it.
  - Option values out of range are refused before any connection is tried.
  - All Redis modules of the collection take these options; set them once with C(module_defaults)
    and the action group C(group/cerniq.ops.redis).
'''
