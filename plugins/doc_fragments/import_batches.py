# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Which batches are stuck, for M(cerniq.ops.import_batch) and M(cerniq.ops.import_batch_info)
    # (IMPORTS_ARGUMENT_SPEC in plugins/module_utils/cerniq/imports.py).
    DOCUMENTATION = r'''
options:
  ids:
    description: Only these batch ids (UUIDs); all stuck batches when unset, none when empty.
    type: list
    elements: str
  tenant_id:
    description: Only batches of this tenant (a UUID; every tenant when unset).
    type: str
  stuck_after:
    description:
      - How long without progress (and since the start) a processing batch must be to be stuck, a duration with
        a unit (C(30m)); C(1m) to C(365d).
      - Called C(stuck_after_minutes) (a number of minutes) before 1.0.0; a number without a unit is refused.
    type: str
    default: 30m
  batches_table:
    description: Table of the import batches (C([schema.]name)).
    type: str
    default: bronze_import_batches
  contacts_table:
    description: Table of the imported contacts (C([schema.]name)).
    type: str
    default: bronze_contacts
'''
