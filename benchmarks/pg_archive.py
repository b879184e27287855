"""Benchmark: the runbook's archive step against cerniq.ops.pg_archive, same server, identical copies.

    .venv/bin/python benchmarks/pg_archive.py [--rows 3000000] [--due 0.10] [--index] [--large-due]
    .venv/bin/python benchmarks/pg_archive.py --module-only --rows 33000000 --due 0.92   # ~30M rows due

Builds a table shaped like ``silver_enrichment_log`` with ``--rows`` rows whose timestamps are
random (not stored in timestamp order), ``--due`` of them older than 90 days plus a thin band of
rows that reach the 90-day cutoff during the run (as live inserts do). Identical copies:

* ``runbook``: runbook 3.1 step 3 verbatim: ``INSERT INTO archive SELECT * ... WHERE created_at <
  NOW() - INTERVAL '90 days'`` then ``DELETE ... WHERE created_at < NOW() - INTERVAL '90 days'``
  (two autocommit statements, as psql runs them);
* ``block``: the module (real Ansible front end, own process) with default options (``strategy: auto``,
  which picks block ranges here);
* ``index`` (``--index``): the module with ``strategy: index`` (batches in timestamp order).

Prints throughput, the ratio to the runbook, the worst transaction, rows the runbook deleted
without archiving, and the module's peak RSS (psutil). ``--large-due`` runs the module once
more on the block copy with a later cutoff (3x more due rows) to show the RSS stays flat.

``--module-only`` skips the runbook copy and the comparison: it builds one table and runs the
module on it, to measure memory when tens of millions of rows are due (the issue's "300k or
30M" claim) without three copies of the table on disk. It checks that nothing was lost or
duplicated (row count and the sum of ids over source + archive equal the table as built, no id
in both, no archived row at or after the cutoff) and prints the module's peak RSS.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import psutil
import psycopg2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.support.ansible_run import collections_root  # noqa: E402
from tests.support.servers import PostgresServer  # noqa: E402


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def build(conn, rows, due):
    t0 = time.monotonic()
    q(conn, 'CREATE TABLE src (id bigint PRIMARY KEY, company_id bigint NOT NULL, created_at timestamptz NOT NULL, '
            'provider text NOT NULL, status text NOT NULL, duration_ms int, payload text)')
    # 100 days of history, `due` of it older than 90 days; random order on disk.
    q(conn, "INSERT INTO src SELECT g, (random() * 100000)::bigint, "
            "now() - interval '90 days' + interval '1 minute' "
            "- (CASE WHEN random() < %s THEN 1 + random() * 9 ELSE -random() * 89 END) * interval '1 day', "
            "(ARRAY['anaf','termene','openapi','hunter'])[1 + g %% 4], 'done', (random() * 5000)::int, "
            "repeat(md5(g::text), 2) FROM generate_series(1, %s) g", (due, rows))
    # Band rows: 1 in 200 of the recent rows; refresh_band() puts them 1-60 s short of the cutoff
    # right before each run, so ~250 rows/s reach the 90-day cutoff during the run (live inserts do).
    q(conn, "UPDATE src SET status = 'band' WHERE id % 200 = 7 AND created_at > now() - interval '89 days'")
    q(conn, 'CREATE INDEX src_created_at ON src (created_at)')
    q(conn, 'CREATE INDEX src_company ON src (company_id)')
    q(conn, 'VACUUM ANALYZE src')
    return time.monotonic() - t0


def refresh_band(conn, table):
    q(conn, "UPDATE %s SET created_at = now() - interval '90 days' + (1 + (id / 200) %% 60) * interval '1 second' "
            "WHERE status = 'band'" % table)


def copy_table(conn, name):
    q(conn, 'CREATE TABLE %s (LIKE src INCLUDING ALL)' % name)
    q(conn, 'INSERT INTO %s SELECT * FROM src' % name)  # same physical order
    q(conn, 'CREATE TABLE %s_archive (LIKE src INCLUDING ALL)' % name)
    q(conn, 'VACUUM ANALYZE %s' % name)


def run_runbook(conn, table):
    refresh_band(conn, table)
    before = set_count(conn, table)
    times = []
    t0 = time.monotonic()
    for sql in ("INSERT INTO %s_archive SELECT * FROM %s WHERE created_at < NOW() - INTERVAL '90 days'",
                "DELETE FROM %s WHERE created_at < NOW() - INTERVAL '90 days'"):
        s = time.monotonic()
        q(conn, sql % ((table, table) if sql.startswith('INSERT') else (table,)))
        times.append(time.monotonic() - s)
    elapsed = time.monotonic() - t0
    archived = q(conn, 'SELECT count(*) FROM %s_archive' % table)[0][0]
    deleted = before - set_count(conn, table)
    lost = q(conn, 'SELECT count(*) FROM (SELECT id FROM src EXCEPT SELECT id FROM %s '
                   'EXCEPT SELECT id FROM %s_archive) s' % (table, table))[0][0]
    return dict(rows=deleted, archived=archived, elapsed=elapsed, worst_tx_ms=max(times) * 1000, lost=lost)


def set_count(conn, table):
    return q(conn, 'SELECT count(*) FROM %s' % table)[0][0]


def run_module(server, table, extra=None, conn=None):
    if conn is not None:
        refresh_band(conn, table)
    args = dict(server.params(), source_table=table, archive_table=table + '_archive', older_than='90 days',
                _ansible_check_mode=False, _ansible_diff=False, _ansible_remote_tmp=tempfile.gettempdir(),
                _ansible_tmpdir=tempfile.mkdtemp(prefix='cerniq-bench-'), _ansible_keep_remote_files=False)
    args.update(extra or {})
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    env = dict(os.environ, PYTHONPATH=collections_root())
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, '-m', 'ansible_collections.cerniq.ops.plugins.modules.pg_archive',
                             handle.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    out, err = proc.communicate()
    elapsed = time.monotonic() - t0
    os.unlink(handle.name)
    result = json.loads(out.decode()[out.decode().index('{'):])
    if result.get('failed'):
        raise SystemExit('module failed: %s %s' % (result.get('msg'), err.decode()[-2000:]))
    return result, elapsed, peak


def lost_or_duplicated(conn, table):
    lost = q(conn, 'SELECT count(*) FROM (SELECT id FROM src EXCEPT SELECT id FROM %s '
                   'EXCEPT SELECT id FROM %s_archive) s' % (table, table))[0][0]
    both = q(conn, 'SELECT count(*) FROM %s s JOIN %s_archive a USING (id)' % (table, table))[0][0]
    return lost, both


def module_only(server, conn, rows, due_fraction):
    built = build(conn, rows, due_fraction)
    q(conn, 'ALTER TABLE src RENAME TO big')
    q(conn, 'CREATE TABLE big_archive (LIKE big INCLUDING ALL)')
    total_before = q(conn, 'SELECT count(*), sum(id) FROM big')[0]
    due = q(conn, "SELECT count(*) FROM big WHERE created_at < now() - interval '90 days'")[0][0]
    size = q(conn, "SELECT pg_size_pretty(pg_total_relation_size('big'))")[0][0]
    print('table: %d rows (%s), %d due at start, built in %.1fs, PostgreSQL %s' % (
        rows, size, due, built, conn.server_version), flush=True)
    result, elapsed, peak = run_module(server, 'big', {}, conn)
    after = q(conn, 'SELECT (SELECT count(*) FROM big) + (SELECT count(*) FROM big_archive), '
                    '(SELECT coalesce(sum(id), 0) FROM big) + (SELECT coalesce(sum(id), 0) FROM big_archive)')[0]
    both = q(conn, 'SELECT count(*) FROM big s JOIN big_archive a USING (id)')[0][0]
    too_new = q(conn, 'SELECT count(*) FROM big_archive WHERE created_at >= %s::timestamptz', (result['cutoff'],))[0][0]
    rate = result['rows_moved'] / result['elapsed_s']
    print('pg_archive strategy=%s: %d rows in %.1fs (engine) / %.1fs (process) = %.0f rows/s; %d batches, '
          'worst transaction %.0f ms, median %.0f ms; rows before %d, after (source + archive) %d, id sums equal: %s; '
          'in both tables %d; archived at or after the cutoff %d; left_for_next_run %d; module peak RSS %.1f MB '
          '(load average %.1f)' % (
              result['strategy'], result['rows_moved'], result['elapsed_s'], elapsed, rate, result['batches'],
              result['worst_batch_ms'], result['median_batch_ms'], total_before[0], after[0],
              total_before[1] == after[1], both, too_new, result['left_for_next_run'], peak / 1048576.0,
              os.getloadavg()[0]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rows', type=int, default=3000000)
    parser.add_argument('--due', type=float, default=0.10)
    parser.add_argument('--index', action='store_true', help='also run strategy=index on a third copy')
    parser.add_argument('--large-due', action='store_true', help='second module run with 3x more due rows')
    parser.add_argument('--module-only', action='store_true',
                        help='one table, the module only: memory and correctness with many due rows')
    opts = parser.parse_args()
    with PostgresServer(settings={'shared_buffers': '512MB', 'max_wal_size': '4GB',
                                  'autovacuum': 'off'}) as server:
        conn = psycopg2.connect(server.dsn())
        conn.autocommit = True
        if opts.module_only:
            module_only(server, conn, opts.rows, opts.due)
            conn.close()
            return
        built = build(conn, opts.rows, opts.due)
        copies = ['runbook', 'block'] + (['idx'] if opts.index else [])
        for name in copies:
            copy_table(conn, name)
        due = q(conn, "SELECT count(*) FROM src WHERE created_at < now() - interval '90 days'")[0][0]
        size = q(conn, "SELECT pg_size_pretty(pg_total_relation_size('src'))")[0][0]
        print('table: %d rows (%s), %d due at start, built in %.1fs, PostgreSQL %s' % (
            opts.rows, size, due, built, conn.server_version))

        # Ours first, then the runbook (so cache warmth does not favour ours), then the index strategy.
        measured = []
        runs = [('block', 'default (auto)', {})]
        if opts.index:
            runs.append(('idx', 'index', {'strategy': 'index'}))
        result, elapsed, peak = run_module(server, 'block', {}, conn)
        measured.append(('default (auto)', result, elapsed, peak, lost_or_duplicated(conn, 'block'),
                         os.getloadavg()[0]))
        load = os.getloadavg()[0]
        rb = run_runbook(conn, 'runbook')
        rb_rate = rb['rows'] / rb['elapsed']
        print('runbook INSERT..SELECT + DELETE: %d rows deleted, %d archived in %.2fs = %.0f rows/s; '
              'worst transaction %.0f ms; rows deleted but never archived: %d (load average %.1f)' % (
                  rb['rows'], rb['archived'], rb['elapsed'], rb_rate, rb['worst_tx_ms'], rb['lost'], load))
        for table, label, extra in runs[1:]:
            result, elapsed, peak = run_module(server, table, extra, conn)
            measured.append((label, result, elapsed, peak, lost_or_duplicated(conn, table), os.getloadavg()[0]))
        for label, result, elapsed, peak, (lost, both), load in measured:
            rate = result['rows_moved'] / result['elapsed_s']
            print('pg_archive strategy=%s -> %s: %d rows in %.2fs (engine) / %.2fs (process) = %.0f rows/s, '
                  'ratio to runbook %.2fx; %d batches, worst transaction %.0f ms, median %.0f ms, '
                  'read-only final check %.0f ms; lost %d, in both tables %d, left_for_next_run %d; '
                  'module peak RSS %.1f MB (load average %.1f)' % (
                      label, result['strategy'], result['rows_moved'], result['elapsed_s'], elapsed, rate,
                      rate / rb_rate,
                      result['batches'], result['worst_batch_ms'], result['median_batch_ms'],
                      result['final_check_ms'], lost, both, result['left_for_next_run'], peak / 1048576.0, load))
        if opts.large_due:
            result, elapsed, peak = run_module(server, 'block', {'older_than': '60 days'})
            lost, both = lost_or_duplicated(conn, 'block')
            print('pg_archive strategy=block, larger due count (older_than 60 days): %d rows in %.2fs = %.0f rows/s; '
                  'worst transaction %.0f ms; lost %d, in both %d; module peak RSS %.1f MB' % (
                      result['rows_moved'], result['elapsed_s'], result['rows_moved'] / result['elapsed_s'],
                      result['worst_batch_ms'], lost, both, peak / 1048576.0))
        conn.close()


if __name__ == '__main__':
    main()
