#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: quality_scores
short_description: Repair missing CERNIQ quality scores (reset sub-scores, trigger scoring)
description:
  - Runbook 2.4 (Quality Score Anomalies) on C(silver_companies). M(cerniq.ops.quality_scores_info) counts the
    unscored companies (it was C(action=report) of this module before 1.0.0).
  - O(state=reset) clears C(completeness_score), C(accuracy_score) and C(freshness_score) where
    C(total_quality_score) is NULL (and a sub-score is still set), so the scorer recalculates them.
  - O(state=triggered) asks the scoring API (C(POST <api_url>/api/v1/internal/scoring/batch), bearer
    O(api_token)) to score the eligible companies (enrichment status in O(enrichment_statuses)). With
    O(payload=query) (the runbook's contract) it sends one request,
    C({"query":"total_quality_score IS NULL AND enrichment_status = complete"}) (the statuses of
    O(enrichment_statuses), C(AND tenant_id = <uuid>) with O(tenant_id)), when at least one eligible company
    was not requested within O(retrigger_after); the companies it covers are marked once it was
    accepted. With O(payload=company_ids) it sends C({"companyIds":[...], "reason":"<text>"}), O(batch_size)
    ids per call, each accepted batch marked.
  - A company marked (C(scoring_requested_at)) is not sent again within O(retrigger_after). A failed
    call leaves its companies unmarked and fails the task after the other batches (listed in
    RV(failed_batches)).
  - O(state) names what the run leaves behind; it was C(action) (C(reset), C(trigger)) before 1.0.0 and has no
    default, so a task written for the old default (a report) fails instead of changing rows.
  - Every option is checked before connecting (bounds below); a missing O(companies_table) ends the task with
    one line naming it, before anything is read or changed.
version_added: 0.1.0
author: cerniq.ops contributors (@cerniq)
extends_documentation_fragment:
  - cerniq.ops.postgres
  - cerniq.ops.api
  - cerniq.ops.quality
attributes:
  check_mode:
    support: full
    description: Reports counts and samples of what would change; no request is sent.
  diff_mode:
    support: none
    description: The result holds counts and a sample of company ids.
options:
  state:
    description: What the run leaves behind - V(reset) sub-scores, or scoring V(triggered).
    type: str
    choices: [reset, triggered]
    required: true
  master_only:
    description: With O(state=reset), only master records (the runbook resets every unscored row).
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
  limit:
    description:
      - Request scoring for at most this many companies.
      - Unset means no limit; otherwise 1 to 1000000 (0 and negative values are refused), like the O(limit) of
        M(cerniq.ops.approval_tasks). Called C(max_companies) before 1.0.0.
      - Only with O(payload=company_ids); refused with V(query), where the API selects the companies.
    type: int
  retrigger_after:
    description:
      - A company already sent to scoring is sent again only after this long, a duration with a unit (C(1h));
        C(0s) to C(365d).
      - Called C(retrigger_after_minutes) (a number of minutes) before 1.0.0; a number without a unit is refused.
    type: str
    default: 1h
  reason:
    description: Sent with each scoring request of O(payload=company_ids) (not blank, at most 1000 characters).
    type: str
    default: total_quality_score missing - runbook 2.4
seealso:
  - module: cerniq.ops.quality_scores_info
'''

EXAMPLES = r'''
- name: Force a recalculation of the sub-scores of unscored companies
  cerniq.ops.quality_scores:
    login_db: cerniq_db
    state: reset

- name: 'Re-trigger scoring through the API (the runbook''s body, {"query": ...})'
  cerniq.ops.quality_scores:
    login_db: cerniq_db
    state: triggered
    api_url: https://api.cerniq.app
    api_token: "{{ vault_cerniq_admin_token }}"

- name: Re-trigger scoring with the company ids, 200 per request
  cerniq.ops.quality_scores:
    login_db: cerniq_db
    state: triggered
    payload: company_ids
    api_url: https://api.cerniq.app
    api_token: "{{ vault_cerniq_admin_token }}"
    batch_size: 200
'''

RETURN = r'''
reset_count:
  description: Companies whose sub-scores were (or would be) cleared.
  returned: when state is reset
  type: int
requested_count:
  description: Companies sent (or that would be sent) to scoring.
  returned: when state is triggered
  type: int
batches:
  description: Accepted requests, with C(count) and C(api_status).
  returned: when state is triggered
  type: list
  elements: dict
batch_count:
  description: Requests sent (in check mode, that would be sent).
  returned: when state is triggered
  type: int
failed_batches:
  description:
    - Rejected or failed requests, with C(count), C(error) and C(api_status) when the API answered.
    - Called C(failed) before 1.0.0 (a key Ansible reads as the task's status).
  returned: when state is triggered
  type: list
  elements: dict
query:
  description: The C(query) sent (or that would be sent) with O(payload=query).
  returned: when state is triggered and payload is query
  type: str
  sample: total_quality_score IS NULL AND enrichment_status = complete
sample:
  description: Up to 20 affected company ids.
  returned: when state is reset or triggered
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import (
    postgres_argument_spec, postgres_connect_module)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.api import api_argument_spec, module_post
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    DATABASE_ERRORS, CerniqError, database_error, require_tables)
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.quality import (
    DEFAULT_REASON, QUALITY_ARGUMENT_SPEC, check_options, reset, tables, trigger, trigger_query)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(api_argument_spec())
    argument_spec.update(QUALITY_ARGUMENT_SPEC)
    argument_spec.update(
        state=dict(type='str', choices=['reset', 'triggered'], required=True),
        master_only=dict(type='bool', default=False),
        payload=dict(type='str', choices=['query', 'company_ids'], default='query'),
        batch_size=dict(type='int', default=100),
        limit=dict(type='int'),
        retrigger_after=dict(type='str', default='1h'),
        reason=dict(type='str', default=DEFAULT_REASON),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('state', 'triggered', ('api_url', 'api_token'))])
    p = module.params
    try:
        check_options(p)
    except CerniqError as error:
        fail_engine_error(module, error)
    conn = postgres_connect_module(module)
    try:
        require_tables(conn, tables(p['companies_table']))
        if p['state'] == 'reset':
            result = reset(conn, p['tenant_id'], p['master_only'], p['companies_table'], check_mode=module.check_mode)
        elif p['payload'] == 'query':
            result = trigger_query(conn, module_post(module), p['api_url'], p['enrichment_statuses'],
                                   p['retrigger_after'], p['tenant_id'], p['companies_table'],
                                   check_mode=module.check_mode)
        else:
            result = trigger(conn, module_post(module), p['api_url'], p['batch_size'], p['enrichment_statuses'],
                             p['retrigger_after'], p['limit'], p['tenant_id'], p['reason'], p['companies_table'],
                             check_mode=module.check_mode)
        if p['state'] == 'triggered':
            failures = result['failed_batches']
            if failures:
                module.fail_json(msg='scoring request failed for %d of %d companies: %s' % (
                    sum(f['count'] for f in failures), result['requested_count'] + sum(f['count'] for f in failures),
                    '; '.join(f['error'] for f in failures)), **result)
    except CerniqError as error:
        fail_engine_error(module, error)
    except DATABASE_ERRORS as error:
        module.fail_json(msg=database_error(error))
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
