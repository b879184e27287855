# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The options M(cerniq.ops.quality_scores) and M(cerniq.ops.quality_scores_info) share
    # (QUALITY_ARGUMENT_SPEC in plugins/module_utils/cerniq/quality.py).
    DOCUMENTATION = r'''
options:
  tenant_id:
    description: Only companies of this tenant (a UUID; every tenant when unset).
    type: str
  enrichment_statuses:
    description: Enrichment statuses whose unscored master companies can be scored (a non-empty list).
    type: list
    elements: str
    default: [complete]
  companies_table:
    description: Table of the silver companies (C([schema.]name)).
    type: str
    default: silver_companies
'''
