#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: quality_scores_info
short_description: Count the CERNIQ master companies without a quality score
description:
  - Runbook 2.4 (Quality Score Anomalies), diagnosis, on C(silver_companies). Counts the master companies without
    C(total_quality_score) by enrichment and promotion status, those eligible for scoring now (enrichment status
    in O(enrichment_statuses)), those already sent to scoring and those still holding stale sub-scores.
    Changes nothing.
  - Replaces C(action=report) of M(cerniq.ops.quality_scores) before 1.0.0.
  - Every option is checked before connecting; a missing O(companies_table) ends the task with one line naming it.
version_added: 1.0.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.quality
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only; nothing to diff.
seealso:
  - module: cerniq.ops.quality_scores
'''

EXAMPLES = r'''
- name: How many master companies have no quality score
  cerniq.ops.quality_scores_info:
    login_db: cerniq_db
  register: quality
'''

RETURN = r'''
unscored:
  description: Unscored master companies grouped by C(enrichment_status) and C(promotion_status), with C(count).
  returned: always
  type: list
  elements: dict
unscored_count:
  description: Unscored master companies.
  returned: always
  type: int
eligible_count:
  description: Unscored master companies whose enrichment status allows scoring.
  returned: always
  type: int
already_requested_count:
  description:
    - Of RV(eligible_count), the companies already sent to scoring (C(scoring_requested_at) set).
    - Called C(requested_count) before 1.0.0, the name M(cerniq.ops.quality_scores) uses for the companies a run
      sends.
  returned: always
  type: int
stale_subscores_count:
  description: Unscored companies still holding a sub-score.
  returned: always
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    DATABASE_ERRORS, CerniqError, database_error, require_tables)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.quality import (
    QUALITY_ARGUMENT_SPEC, check_options, report, tables)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(QUALITY_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:
        check_options(p)
    except CerniqError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, tables(p['companies_table']))
        result = report(conn, p['enrichment_statuses'], p['tenant_id'], p['companies_table'])
    except CerniqError as error:
        fail_engine_error(module, error)
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
