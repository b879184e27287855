# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The options of plugins/module_utils/alertmanager_silence.py's modules (ALERTMANAGER_ARGUMENT_SPEC).
    DOCUMENTATION = r'''
options:
  url:
    description:
      - Base URL of Alertmanager, for example C(http://monitor1:9093), or the URLs of the members of an
        Alertmanager cluster.
      - Reads and writes go to the first member that answers. After a change, every other member that
        answers is polled until it shows the same silences (cluster gossip); a member that does not
        answer is reported in the result (C(cluster.unreachable)), not an error.
    type: list
    elements: str
    required: true
  validate_certs:
    description: Verify the TLS certificates of Alertmanager.
    type: bool
    default: true
  timeout:
    description: How long to wait for each API call, as a duration with a unit (C(10s)); C(1ms) to C(1h).
    type: str
    default: 10s
  cluster_timeout:
    description:
      - How long the other cluster members may take to show a change, as a duration with a unit
        (C(30s)); C(0s) to C(1h). A member that answers but still does not show it then fails the task.
    type: str
    default: 30s
'''
