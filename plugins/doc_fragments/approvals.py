# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The options M(cerniq.ops.approval_tasks) and M(cerniq.ops.approval_tasks_info) share
    # (APPROVALS_ARGUMENT_SPEC in plugins/module_utils/cerniq/approvals.py).
    DOCUMENTATION = r'''
options:
  tenant_id:
    description: Only tasks of this tenant (a UUID; every tenant when unset).
    type: str
  max_tasks_per_operator:
    description: An operator with more pending and assigned tasks than this is overloaded (0 to 1000000).
    type: int
    default: 10
  tasks_table:
    description: Table of the approval tasks (C([schema.]name)).
    type: str
    default: approval_tasks
  users_table:
    description: Table of the users (C([schema.]name)).
    type: str
    default: users
'''
