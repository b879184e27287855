# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quality score anomalies (runbook 2.4) on ``silver_companies`` (plain Python).

- ``report``: master companies without ``total_quality_score`` by enrichment and
  promotion status, how many could be scored now, how many keep stale sub-scores.
- ``reset``: clear the sub-scores (completeness, accuracy, freshness) of companies whose
  total is NULL so the scorer recalculates them from scratch; only rows that still have
  a sub-score change, so a rerun changes nothing.
- ``trigger``: ask the scoring API (``POST <api>/api/v1/internal/scoring/batch``) to score
  the eligible companies. ``payload='query'`` (the runbook's contract) sends one request,
  ``{"query": "total_quality_score IS NULL AND enrichment_status = complete"}``: the API
  selects the companies; the ones it covers are kept in a temporary table
  (``companies_to_score``, as in the runbook) while the request runs and marked when it
  was accepted. ``payload='company_ids'`` sends ``{"companyIds": [...], "reason": ...}`` in
  batches read by keyset pagination (memory-flat), each accepted batch marked.
  ``scoring_requested_at`` marks a sent company, so a rerun within ``retrigger_after`` (a
  duration with a unit) sends nothing again. ``limit`` (company_ids only) has the meaning of
  the other limits: unset is no limit, ``N`` (1 to 1,000,000) at most ``N`` companies sent;
  0 is refused.

``check_options`` checks the module's options before it connects.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.api import rejected_message, request_failed_message
from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.checks import (
    MAX_LIMIT, MAX_SECONDS, CerniqError, check_api, check_duration, check_int, check_relation, check_text, check_texts,
    check_uuid)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import explicit_transactions, transaction

SCORING_PATH = '/api/v1/internal/scoring/batch'
DEFAULT_REASON = 'total_quality_score missing - runbook 2.4'
PAYLOADS = ('query', 'company_ids')

# The options the quality_scores and quality_scores_info modules share (documented once in the
# cerniq.ops.quality doc fragment).
QUALITY_ARGUMENT_SPEC = dict(
    tenant_id=dict(type='str'),
    enrichment_statuses=dict(type='list', elements='str', default=['complete']),
    companies_table=dict(type='str', default='silver_companies'),
)


class QualityError(CerniqError):
    """Bad input."""


def _table(name):
    return check_relation('companies_table', name)


def tables(table='silver_companies'):
    """``{option: quoted table}`` for ``require_tables``."""
    return dict(companies_table=_table(table))


def check_options(p):
    """Check the options of quality_scores (``p['state']``) or quality_scores_info (no ``state``) before
    connecting; raises ``CerniqError`` naming the option."""
    _table(p['companies_table'])
    check_uuid('tenant_id', p['tenant_id'], optional=True)
    check_texts('enrichment_statuses', p['enrichment_statuses'])
    if p.get('state') is None:
        return
    check_int('batch_size', p['batch_size'], 1, 10000)
    check_int('limit', p['limit'], 1, MAX_LIMIT, optional=True)
    check_duration('retrigger_after', p['retrigger_after'], 0, MAX_SECONDS)
    check_text('reason', p['reason'])
    if p['payload'] not in PAYLOADS:
        raise QualityError('payload must be one of %s, got %r' % (', '.join(PAYLOADS), p['payload']))
    if p['payload'] == 'query' and p['limit'] is not None:
        raise QualityError('limit needs payload=company_ids: with payload=query the API selects the '
                           'companies itself')
    if p['state'] == 'triggered':
        check_api(p)


def _end_read(conn):
    if not conn.autocommit:
        conn.rollback()


def _tenant(tenant_id):
    return ' AND tenant_id = %(tenant)s::uuid' if tenant_id else ''


def report(conn, enrichment_statuses=('complete',), tenant_id=None, table='silver_companies'):
    t = _table(table)
    params = dict(tenant=tenant_id, statuses=list(enrichment_statuses))
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), enrichment_status, promotion_status FROM %s "
                    "WHERE total_quality_score IS NULL AND is_master_record = true%s "
                    "GROUP BY enrichment_status, promotion_status ORDER BY count(*) DESC, 2, 3"
                    % (t, _tenant(tenant_id)), params)
        groups = [dict(count=row[0], enrichment_status=row[1], promotion_status=row[2]) for row in cur.fetchall()]
        cur.execute("SELECT count(*) FILTER (WHERE is_master_record AND enrichment_status = ANY(%%(statuses)s)), "
                    "count(*) FILTER (WHERE completeness_score IS NOT NULL OR accuracy_score IS NOT NULL "
                    "OR freshness_score IS NOT NULL), "
                    "count(*) FILTER (WHERE is_master_record AND enrichment_status = ANY(%%(statuses)s) "
                    "AND scoring_requested_at IS NOT NULL) "
                    "FROM %s WHERE total_quality_score IS NULL%s" % (t, _tenant(tenant_id)), params)
        eligible, stale, requested = cur.fetchone()
    _end_read(conn)
    return dict(unscored=groups, unscored_count=sum(g['count'] for g in groups), eligible_count=eligible,
                stale_subscores_count=stale, already_requested_count=requested)


def reset(conn, tenant_id=None, master_only=False, table='silver_companies', check_mode=False, sample_size=20):
    """Clear the sub-scores where the total is NULL. Returns ``dict(changed, reset_count, sample=[ids])``."""
    t = _table(table)
    where = ("total_quality_score IS NULL AND (completeness_score IS NOT NULL OR accuracy_score IS NOT NULL "
             "OR freshness_score IS NOT NULL)%s%s" % (' AND is_master_record' if master_only else '',
                                                      _tenant(tenant_id)))
    params = dict(tenant=tenant_id)
    with transaction(conn, commit=not check_mode), conn.cursor() as cur:
        if check_mode:
            cur.execute('SELECT id::text FROM %s WHERE %s ORDER BY id' % (t, where), params)
        else:
            cur.execute('UPDATE %s SET completeness_score = NULL, accuracy_score = NULL, freshness_score = NULL, '
                        'updated_at = now() WHERE %s RETURNING id::text' % (t, where), params)
        count = cur.rowcount
        sample = sorted(row[0] for row in cur.fetchmany(max(sample_size, 0) or 1))[:sample_size]
    return dict(changed=count > 0, reset_count=count, sample=sample)


def _check_marker_writable(conn, t, company_ids):
    """Before the first API call: the ``scoring_requested_at`` marker can be written (permissions, triggers,
    a read-only server), proved by a no-op UPDATE of one of ``company_ids`` (one no other transaction holds),
    rolled back at once. Raises the database's error otherwise, so a run that could not mark what it sends
    makes no call (a later run would send it again)."""
    with conn.cursor() as cur:
        try:
            cur.execute('UPDATE %s SET scoring_requested_at = scoring_requested_at WHERE id = (SELECT id FROM %s '
                        'WHERE id = ANY(%%s::uuid[]) LIMIT 1 FOR UPDATE SKIP LOCKED)' % (t, t), (list(company_ids),))
        finally:
            conn.rollback()


def trigger(conn, post, api_url, batch_size=100, enrichment_statuses=('complete',), retrigger_after='1h',
            limit=None, tenant_id=None, reason=DEFAULT_REASON, table='silver_companies', check_mode=False):
    """Request scoring of eligible unscored master companies, ``batch_size`` ids per call.

    Returns ``dict(changed, requested_count, batches=[{count, api_status}], failed_batches=[{count, error}],
    sample)``.
    """
    t = _table(table)
    if not api_url:
        raise QualityError('api_url is required to trigger scoring')
    batch_size = check_int('batch_size', batch_size, 1, 10000)
    enrichment_statuses = check_texts('enrichment_statuses', list(enrichment_statuses or []))
    limit = check_int('limit', limit, 1, MAX_LIMIT, optional=True)
    seconds = check_duration('retrigger_after', retrigger_after, 0, MAX_SECONDS)
    where = ("total_quality_score IS NULL AND is_master_record AND enrichment_status = ANY(%%(statuses)s) "
             "AND (scoring_requested_at IS NULL OR scoring_requested_at < now() - %%(seconds)s * interval '1 second')"
             "%s" % _tenant(tenant_id))
    params = dict(statuses=list(enrichment_statuses), seconds=seconds, tenant=tenant_id)
    url = api_url.rstrip('/') + SCORING_PATH
    if check_mode:
        with conn.cursor() as cur:
            cur.execute('SELECT count(*) FROM %s WHERE %s' % (t, where), params)
            count = cur.fetchone()[0]
            cur.execute('SELECT id::text FROM %s WHERE %s ORDER BY id LIMIT 20' % (t, where), params)
            sample = [row[0] for row in cur.fetchall()]
        _end_read(conn)
        count = min(count, limit) if limit else count
        return dict(changed=count > 0, requested_count=count, batches=[], failed_batches=[], sample=sample,
                    batch_count=-(-count // int(batch_size)))
    requested, batches, failed, sample, last = 0, [], [], [], '00000000-0000-0000-0000-000000000000'
    with explicit_transactions(conn):
        while limit is None or requested + sum(f['count'] for f in failed) < limit:
            size = int(batch_size) if limit is None else min(int(batch_size),
                                                             limit - requested - sum(f['count'] for f in failed))
            with conn.cursor() as cur:
                cur.execute('SELECT id::text FROM %s WHERE %s AND id > %%(last)s::uuid ORDER BY id LIMIT %d'
                            % (t, where, size), dict(params, last=last))
                ids = [row[0] for row in cur.fetchall()]
            conn.rollback()
            if not ids:
                break
            if not requested and not failed:
                _check_marker_writable(conn, t, ids)
            last = ids[-1]
            try:
                status, body = post(url, dict(companyIds=ids, reason=reason))
            except Exception as error:
                failed.append(dict(count=len(ids), error=request_failed_message(error)))
                continue
            if not 200 <= int(status) < 300:
                failed.append(dict(count=len(ids), error=rejected_message('scoring API', status, body),
                                   api_status=int(status)))
                continue
            with conn.cursor() as cur:
                cur.execute('UPDATE %s SET scoring_requested_at = now() WHERE id = ANY(%%(ids)s::uuid[])' % t,
                            dict(ids=ids))
            conn.commit()
            requested += len(ids)
            batches.append(dict(count=len(ids), api_status=int(status)))
            sample.extend(ids[:max(0, 20 - len(sample))])
    return dict(changed=requested > 0, requested_count=requested, batches=batches, failed_batches=failed, sample=sample,
                batch_count=len(batches))


def scoring_query(enrichment_statuses=('complete',), tenant_id=None):
    """The runbook's ``query`` for the eligible companies, e.g.
    ``total_quality_score IS NULL AND enrichment_status = complete``."""
    statuses = list(enrichment_statuses)
    text = 'total_quality_score IS NULL AND ' + (
        'enrichment_status = %s' % statuses[0] if len(statuses) == 1
        else 'enrichment_status IN (%s)' % ', '.join(statuses))
    return text + (' AND tenant_id = %s' % tenant_id if tenant_id else '')


def trigger_query(conn, post, api_url, enrichment_statuses=('complete',), retrigger_after='1h', tenant_id=None,
                  table='silver_companies', check_mode=False, sample_size=20):
    """Runbook 2.4 step 1 as written: one ``{"query": ...}`` request for every eligible company.

    Sent only when one of them was not requested within ``retrigger_after`` (a duration with a unit). The companies it
    covers are copied into ``pg_temp.companies_to_score`` before the call (no row lock is held during
    it) and marked once the API accepted it. Returns the keys of ``trigger`` plus ``query``.
    """
    t = _table(table)
    if not api_url:
        raise QualityError('api_url is required to trigger scoring')
    enrichment_statuses = check_texts('enrichment_statuses', list(enrichment_statuses or []))
    seconds = check_duration('retrigger_after', retrigger_after, 0, MAX_SECONDS)
    eligible = ("total_quality_score IS NULL AND is_master_record AND enrichment_status = ANY(%%(statuses)s)%s"
                % _tenant(tenant_id))
    due = "scoring_requested_at IS NULL OR scoring_requested_at < now() - %(seconds)s * interval '1 second'"
    params = dict(statuses=list(enrichment_statuses), seconds=seconds, tenant=tenant_id)
    query = scoring_query(enrichment_statuses, tenant_id)
    result = dict(changed=False, requested_count=0, batches=[], failed_batches=[], sample=[], batch_count=0,
                  query=query)
    with explicit_transactions(conn):
        with conn.cursor() as cur:
            cur.execute('SELECT count(*) FILTER (WHERE %s), count(*) FROM %s WHERE %s' % (due, t, eligible), params)
            due_count, covered = cur.fetchone()
            cur.execute('SELECT id::text FROM %s WHERE %s ORDER BY id LIMIT %d' % (t, eligible, sample_size), params)
            sample = [row[0] for row in cur.fetchall()]
            if not due_count:
                conn.rollback()
                return result
            if check_mode:
                conn.rollback()
                return dict(result, changed=True, requested_count=covered, sample=sample, batch_count=1)
            cur.execute('SELECT id::text FROM %s WHERE %s LIMIT 20' % (t, eligible), params)
            _check_marker_writable(conn, t, [row[0] for row in cur.fetchall()])
            cur.execute('DROP TABLE IF EXISTS pg_temp.companies_to_score')
            cur.execute('CREATE TEMP TABLE companies_to_score AS SELECT id FROM %s WHERE %s' % (t, eligible), params)
        conn.commit()
        try:
            status, body = post(api_url.rstrip('/') + SCORING_PATH, dict(query=query))
            error = None if 200 <= int(status) < 300 else rejected_message('scoring API', status, body)
        except Exception as failure:
            status, error = None, request_failed_message(failure)
        with conn.cursor() as cur:
            if error is None:
                cur.execute('UPDATE %s AS c SET scoring_requested_at = now() FROM pg_temp.companies_to_score s '
                            'WHERE c.id = s.id' % t)
                result.update(changed=True, requested_count=cur.rowcount, sample=sample, batch_count=1,
                              batches=[dict(count=cur.rowcount, api_status=int(status))])
            else:
                cur.execute('SELECT count(*) FROM pg_temp.companies_to_score')
                failed = dict(count=cur.fetchone()[0], error=error)
                if status is not None:
                    failed['api_status'] = int(status)
                result['failed_batches'] = [failed]
            cur.execute('DROP TABLE pg_temp.companies_to_score')
        conn.commit()
    return result
