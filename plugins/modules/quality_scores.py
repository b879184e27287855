#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: quality_scores
short_description: Diagnose and repair missing CERNIQ quality scores
description:
  - Runbook 2.4 (Quality Score Anomalies) on C(silver_companies).
  - O(action=report) counts the master companies without C(total_quality_score) by enrichment and promotion
    status, those eligible for scoring now (enrichment status in O(enrichment_statuses)) and those still
    holding stale sub-scores.
  - O(action=reset) clears C(completeness_score), C(accuracy_score) and C(freshness_score) where
    C(total_quality_score) is NULL (and a sub-score is still set), so the scorer recalculates them.
  - O(action=trigger) asks the scoring API (C(POST <api_url>/api/v1/internal/scoring/batch), bearer
    O(api_token)) to score the eligible companies. With O(payload=query) (the runbook's contract) it sends one
    request, C({"query":"total_quality_score IS NULL AND enrichment_status = complete"}) (the statuses of
    O(enrichment_statuses), C(AND tenant_id = <uuid>) with O(tenant_id)), when at least one eligible company
    was not requested within O(retrigger_after_minutes); the companies it covers are marked once it was
    accepted. With O(payload=company_ids) it sends C({"companyIds":[...], "reason":"<text>"}), O(batch_size)
    ids per call, each accepted batch marked.
  - A company marked (C(scoring_requested_at)) is not sent again within O(retrigger_after_minutes). A failed
    call leaves its companies unmarked and fails the task after the other batches (listed in
    RV(failed_batches)).
  - Every option is checked before connecting (bounds below); a missing O(companies_table) ends the task with
    one line naming it, before anything is read or changed.
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.api
attributes:
  check_mode:
    support: full
    description: Reports counts and samples of what would change; no request is sent.
  diff_mode:
    support: none
    description: The result holds counts and a sample of company ids.
options:
  action:
    description: What to do.
    type: str
    choices: [report, reset, trigger]
    default: report
  tenant_id:
    description: Only companies of this tenant (a UUID; every tenant when unset).
    type: str
  enrichment_statuses:
    description: Enrichment statuses whose unscored master companies can be scored (a non-empty list).
    type: list
    elements: str
    default: [complete]
  master_only:
    description: With O(action=reset), only master records (the runbook resets every unscored row).
    type: bool
    default: false
  payload:
    description:
      - Body of the scoring request. V(query) is the runbook's contract (one request, the API selects the
        companies); V(company_ids) sends the ids in batches of O(batch_size) (the body of this module before
        1.0.0).
    type: str
    choices: [query, company_ids]
    default: query
  batch_size:
    description: Company ids per scoring request (1 to 10000), with O(payload=company_ids).
    type: int
    default: 100
  max_companies:
    description:
      - Request scoring for at most this many companies.
      - Unset means no limit; otherwise 1 to 1000000 (0 and negative values are refused), like the limits of
        M(cerniq.ops.approval_tasks).
      - Only with O(payload=company_ids); refused with V(query), where the API selects the companies.
    type: int
  retrigger_after_minutes:
    description: A company already sent to scoring is sent again only after this many minutes (0 to 525600, one
      year).
    type: int
    default: 60
  reason:
    description: Sent with each scoring request of O(payload=company_ids) (not blank, at most 1000 characters).
    type: str
    default: total_quality_score missing - runbook 2.4
  companies_table:
    description: Table of the silver companies (C([schema.]name)).
    type: str
    default: silver_companies
'''

EXAMPLES = r'''
- name: How many master companies have no quality score
  cerniq.ops.quality_scores:
    login_db: cerniq_db
    action: report
  register: quality

- name: Force a recalculation of their sub-scores
  cerniq.ops.quality_scores:
    login_db: cerniq_db
    action: reset

- name: Re-trigger scoring through the API (runbook body {"query": ...})
  cerniq.ops.quality_scores:
    login_db: cerniq_db
    action: trigger
    api_url: https://api.cerniq.app
    api_token: "{{ vault_cerniq_admin_token }}"

- name: Re-trigger scoring with the company ids, 200 per request
  cerniq.ops.quality_scores:
    login_db: cerniq_db
    action: trigger
    payload: company_ids
    api_url: https://api.cerniq.app
    api_token: "{{ vault_cerniq_admin_token }}"
    batch_size: 200
'''

RETURN = r'''
unscored:
  description: Unscored master companies grouped by C(enrichment_status) and C(promotion_status), with C(count).
  returned: when action is report
  type: list
  elements: dict
unscored_count:
  description: Unscored master companies.
  returned: when action is report
  type: int
eligible_count:
  description: Unscored master companies whose enrichment status allows scoring.
  returned: when action is report
  type: int
stale_subscores_count:
  description: Unscored companies still holding a sub-score.
  returned: when action is report
  type: int
reset_count:
  description: Companies whose sub-scores were (or would be) cleared.
  returned: when action is reset
  type: int
requested_count:
  description: Companies sent (or that would be sent) to scoring.
  returned: when action is trigger
  type: int
batches:
  description: Accepted requests, with C(count) and C(api_status).
  returned: when action is trigger
  type: list
  elements: dict
batch_count:
  description: Requests sent (in check mode, that would be sent).
  returned: when action is trigger
  type: int
failed_batches:
  description:
    - Rejected or failed requests, with C(count), C(error) and C(api_status) when the API answered.
    - Called C(failed) before 1.0.0 (a key Ansible reads as the task's status).
  returned: when action is trigger
  type: list
  elements: dict
query:
  description: The C(query) sent (or that would be sent) with O(payload=query).
  returned: when action is trigger and payload is query
  type: str
  sample: total_quality_score IS NULL AND enrichment_status = complete
sample:
  description: Up to 20 affected company ids.
  returned: when action is reset or trigger
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.api import api_argument_spec, module_post
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    DATABASE_ERRORS, CerniqError, database_error, require_tables)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.quality import (
    DEFAULT_REASON, check_options, report, reset, tables, trigger, trigger_query)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(api_argument_spec())
    argument_spec.update(
        action=dict(type='str', choices=['report', 'reset', 'trigger'], default='report'),
        tenant_id=dict(type='str'),
        enrichment_statuses=dict(type='list', elements='str', default=['complete']),
        master_only=dict(type='bool', default=False),
        payload=dict(type='str', choices=['query', 'company_ids'], default='query'),
        batch_size=dict(type='int', default=100),
        max_companies=dict(type='int'),
        retrigger_after_minutes=dict(type='int', default=60),
        reason=dict(type='str', default=DEFAULT_REASON),
        companies_table=dict(type='str', default='silver_companies'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('action', 'trigger', ('api_url', 'api_token'))])
    p = module.params
    try:
        check_options(p)
    except CerniqError as error:
        module.fail_json(msg=str(error))
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, tables(p['companies_table']))
        if p['action'] == 'report':
            result = dict(report(conn, p['enrichment_statuses'], p['tenant_id'], p['companies_table']), changed=False)
        elif p['action'] == 'reset':
            result = reset(conn, p['tenant_id'], p['master_only'], p['companies_table'], check_mode=module.check_mode)
        elif p['payload'] == 'query':
            result = trigger_query(conn, module_post(module), p['api_url'], p['enrichment_statuses'],
                                   p['retrigger_after_minutes'], p['tenant_id'], p['companies_table'],
                                   check_mode=module.check_mode)
        else:
            result = trigger(conn, module_post(module), p['api_url'], p['batch_size'], p['enrichment_statuses'],
                             p['retrigger_after_minutes'], p['max_companies'], p['tenant_id'], p['reason'],
                             p['companies_table'], check_mode=module.check_mode)
        if p['action'] == 'trigger':
            failures = result['failed_batches']
            if failures:
                module.fail_json(msg='scoring request failed for %d of %d companies: %s' % (
                    sum(f['count'] for f in failures), result['requested_count'] + sum(f['count'] for f in failures),
                    '; '.join(f['error'] for f in failures)), **result)
    except CerniqError as error:
        module.fail_json(msg=str(error))
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
