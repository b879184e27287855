"""Benchmark: the runbook's archive step against cerniq.ops.pg_archive, paired in the same run, medians of rounds.

    .venv/bin/python benchmarks/pg_archive.py [--rows 3000000] [--days 100] [--older-than '90 days'] [--runs 3]
    .venv/bin/python benchmarks/pg_archive.py --module-only --rows 33000000 --days 1000 --older-than '80 days'

Data (issue 18's shape): ``src (id bigserial PRIMARY KEY, source text, duration_ms int, payload jsonb,
created_at timestamptz)``, ``--rows`` rows whose ``created_at`` is uniformly random over the last ``--days``
days (so the rows older than ``--older-than`` are spread over every page), an index on ``created_at``,
``VACUUM ANALYZE``. Default: 3M rows, 100 days, 90 days -> ~300k due. The server is a throwaway one
(cerniq_testkit/servers.py, shared_buffers 512MB, autovacuum off so nothing runs between rounds).

Every round makes two fresh copies of ``src`` (same physical order, each with an empty archive
table ``LIKE src INCLUDING ALL``, ``VACUUM ANALYZE``; untimed) and runs, in alternating order:

* ``runbook``: runbook 3.1 step 3 verbatim, two autocommit statements as psql runs them:
  ``INSERT INTO archive SELECT * FROM t WHERE created_at < NOW() - INTERVAL '90 days'`` then
  ``DELETE FROM t WHERE created_at < NOW() - INTERVAL '90 days'``;
* ``pg_archive``: the module with the options ``daily_maintenance.yml`` passes (``source_table``,
  ``archive_table``, ``timestamp_column``, ``older_than``) through ``ansible-playbook`` on localhost
  (benchmarks/playbook_timing.py): its seconds are the playbook's wall time minus a no-op playbook's
  run right before it (start-up, its own row); ``module process s`` is the module's own process
  (start-up and imports included) and ``engine s`` its ``elapsed_seconds`` (engine only).

Per round: seconds, the paired ratio (runbook seconds / pg_archive seconds), the longest statement
of each side (for pg_archive: its longest write transaction and its longest read-only count),
rows lost (in the source before, in neither table after), rows in both tables, rows archived at
or after the cutoff, ``left_for_next_run``, the module's peak RSS. The summary gives medians and
ranges. ``--module-only`` builds one table and runs only the module (memory and correctness with
tens of millions of rows due).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
import psycopg2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.playbook_timing import PairedBenchmark, Sample, machine_line  # noqa: E402
from cerniq_testkit.ansible_run import collections_root  # noqa: E402
from cerniq_testkit.servers import PostgresServer  # noqa: E402


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def build(conn, rows, days):
    started = time.monotonic()
    q(conn, 'CREATE TABLE src (id bigserial PRIMARY KEY, source text NOT NULL, duration_ms int, payload jsonb, '
            'created_at timestamptz NOT NULL)')
    q(conn, "INSERT INTO src (source, duration_ms, payload, created_at) "
            "SELECT (ARRAY['anaf', 'termene', 'openapi', 'hunter'])[1 + (random() * 3)::int], (random() * 5000)::int, "
            "jsonb_build_object('company_id', (random() * 100000)::int, 'status', 'done', "
            "'fields', jsonb_build_array(md5(g::text), md5((g * 7)::text)), 'score', round(random()::numeric, 4)), "
            "now() - random() * %s * interval '1 day' FROM generate_series(1, %s) g", (days, rows))
    q(conn, 'CREATE INDEX src_created_at ON src (created_at)')
    q(conn, 'VACUUM ANALYZE src')
    return time.monotonic() - started


def copy_table(conn, name):
    q(conn, 'DROP TABLE IF EXISTS %s, %s_archive' % (name, name))
    q(conn, 'CREATE TABLE %s (LIKE src INCLUDING ALL)' % name)
    q(conn, 'INSERT INTO %s SELECT * FROM src' % name)  # same physical order
    q(conn, 'CREATE TABLE %s_archive (LIKE src INCLUDING ALL)' % name)
    q(conn, 'VACUUM ANALYZE %s' % name)


def checkpoint(server):
    su = psycopg2.connect(server.dsn(superuser=True))
    su.autocommit = True
    q(su, 'CHECKPOINT')
    su.close()


def check_rows(conn, table, cutoff, reference=True):
    """(lost, in both tables, archived at or after the cutoff); lost is counted against the untouched ``src``."""
    lost = q(conn, 'SELECT count(*) FROM (SELECT id FROM src EXCEPT SELECT id FROM %s '
                   'EXCEPT SELECT id FROM %s_archive) s' % (table, table))[0][0] if reference else None
    both = q(conn, 'SELECT count(*) FROM %s s JOIN %s_archive a USING (id)' % (table, table))[0][0]
    late = q(conn, 'SELECT count(*) FROM %s_archive WHERE created_at >= %%s::timestamptz' % table, (cutoff,))[0][0]
    return lost, both, late


def run_runbook(server, table, older_than):
    conn = psycopg2.connect(server.dsn())
    conn.autocommit = True
    times = []
    started = time.monotonic()
    for sql in ("INSERT INTO {t}_archive SELECT * FROM {t} WHERE created_at < NOW() - INTERVAL '{i}'",
                "DELETE FROM {t} WHERE created_at < NOW() - INTERVAL '{i}'"):
        statement_started = time.monotonic()
        q(conn, sql.format(t=table, i=older_than))
        times.append(time.monotonic() - statement_started)
    seconds = time.monotonic() - started
    archived = q(conn, 'SELECT count(*) FROM %s_archive' % table)[0][0]
    cutoff = q(conn, "SELECT (now() - %s::interval)::text", (older_than,))[0][0]
    lost, both, _late = check_rows(conn, table, cutoff)
    conn.close()
    return dict(seconds=seconds, rows=archived, worst_ms=max(times) * 1000, lost=lost, both=both)


def run_module(server, table, older_than):
    """The module in its own process, as Ansible runs it on a target; (process seconds, result, peak RSS)."""
    args = dict(server.params(), source_table=table, archive_table=table + '_archive', older_than=older_than,
                _ansible_check_mode=False, _ansible_diff=False, _ansible_remote_tmp=tempfile.gettempdir(),
                _ansible_tmpdir=tempfile.mkdtemp(prefix='cerniq-bench-'), _ansible_keep_remote_files=False)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    env = dict(os.environ, PYTHONPATH=collections_root())
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, '-m', 'ansible_collections.cerniq.ops.plugins.modules.pg_archive',
                             handle.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    out, err = proc.communicate()
    seconds = time.monotonic() - started
    os.unlink(handle.name)
    text = out.decode()
    result = json.loads(text[text.index('{'):])
    if result.get('failed'):
        raise SystemExit('module failed: %s %s' % (result.get('msg'), err.decode()[-2000:]))
    return seconds, result, peak


def module_figures(server, table, older_than, reference=True):
    seconds, result, peak = run_module(server, table, older_than)
    conn = psycopg2.connect(server.dsn())
    lost, both, late = check_rows(conn, table, result['cutoff'], reference)
    conn.close()
    return dict(seconds=seconds, engine_s=result['elapsed_seconds'], rows=result['moved'],
                worst_ms=result['worst_batch_ms'], worst_check_ms=result['worst_check_ms'],
                median_ms=result['median_batch_ms'], batches=result['batches'], check_ms=result['final_check_ms'],
                left=result['left_for_next_run'], lost=lost, both=both, late=late, rss_mb=peak / 1048576.0)


def median_range(values, fmt='%.2f'):
    return (fmt + ' (' + fmt + '-' + fmt + ')') % (statistics.median(values), min(values), max(values))


def paired(server, conn, opts):
    """Runbook and module through ansible-playbook in the same rounds (benchmarks/playbook_timing.py)."""
    built = build(conn, opts.rows, opts.days)
    due = q(conn, 'SELECT count(*) FROM src WHERE created_at < now() - %s::interval', (opts.older_than,))[0][0]
    size = q(conn, "SELECT pg_size_pretty(pg_total_relation_size('src')), pg_relation_size('src') / 8192")[0]
    print('table src: %d rows, %s (%d heap pages), %d due (older than %s), built in %.0f s, PostgreSQL %s' % (
        opts.rows, size[0], size[1], due, opts.older_than, built, conn.server_version), flush=True)

    def fresh(table):
        def prepare():
            copy_table(conn, table)
            checkpoint(server)
        return prepare

    def runbook():
        figures = run_runbook(server, 'rb', opts.older_than)
        return Sample(figures['seconds'], **{'longest statement ms': figures['worst_ms'],
                                             'rows lost': figures['lost'], 'rows in both tables': figures['both']})

    def module_figures_after(result):
        lost, both, late = check_rows(conn, 'mod', result['cutoff'])
        if lost or both or late:
            raise RuntimeError('pg_archive lost %d rows, left %d in both tables, archived %d too new' % (
                lost, both, late))
        return {'longest write ms': result['worst_batch_ms'], 'longest read ms': result['worst_check_ms'],
                'median batch ms': result['median_batch_ms'], 'batches': result['batches'],
                'final check ms': result['final_check_ms'], 'rows lost': lost, 'rows in both tables': both,
                'left for next run': result['left_for_next_run']}

    bench = PairedBenchmark(runs=opts.runs, autogroup_nice=opts.autogroup_nice)
    bench.add('runbook INSERT + DELETE', runbook, prepare=fresh('rb'), baseline=True)
    # The options daily_maintenance.yml passes (source_table, archive_table, older_than; the connection
    # from module_defaults there, as module arguments here).
    bench.add_module('pg_archive, as daily_maintenance.yml', 'pg_archive', dict(
        server.params(), source_table='mod', archive_table='mod_archive', timestamp_column='created_at',
        older_than=opts.older_than), prepare=fresh('mod'), rss=True, figures=module_figures_after)
    bench.run()
    bench.print_report('pg_archive vs runbook 3.1 step 3, %d rows, %d due, through ansible-playbook '
                       '(module seconds = playbook minus the no-op playbook run right before it; engine s = its elapsed_seconds, '
                       'engine only)' % (opts.rows, due))


def module_only(server, conn, opts):
    built = build(conn, opts.rows, opts.days)
    q(conn, 'ALTER TABLE src RENAME TO big')
    q(conn, 'CREATE TABLE big_archive (LIKE big INCLUDING ALL)')
    before = q(conn, 'SELECT count(*), sum(id) FROM big')[0]
    due = q(conn, 'SELECT count(*) FROM big WHERE created_at < now() - %s::interval', (opts.older_than,))[0][0]
    size = q(conn, "SELECT pg_size_pretty(pg_total_relation_size('big'))")[0][0]
    print('table big: %d rows (%s), %d due at start, built in %.0f s, PostgreSQL %s' % (
        opts.rows, size, due, built, conn.server_version), flush=True)
    figures = module_figures(server, 'big', opts.older_than, reference=False)
    after = q(conn, 'SELECT (SELECT count(*) FROM big) + (SELECT count(*) FROM big_archive), '
                    '(SELECT coalesce(sum(id), 0) FROM big) + (SELECT coalesce(sum(id), 0) FROM big_archive)')[0]
    print('pg_archive: %d rows in %.1f s (module process; engine only %.1f s) = %.0f rows/s; %d batches, median '
          '%.0f ms, longest write transaction %.0f ms, longest read-only statement %.0f ms; rows before %d, after '
          '(source + archive) %d, id sums equal: %s; in both tables %d; archived at/after the cutoff %d; '
          'left_for_next_run %d; module peak RSS %.1f MB (load average %.1f)' % (
              figures['rows'], figures['seconds'], figures['engine_s'], figures['rows'] / figures['engine_s'],
              figures['batches'], figures['median_ms'], figures['worst_ms'], figures['worst_check_ms'], before[0],
              after[0], before[1] == after[1], figures['both'], figures['late'], figures['left'], figures['rss_mb'],
              os.getloadavg()[0]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rows', type=int, default=3000000)
    parser.add_argument('--days', type=float, default=100, help='created_at uniformly random over this many days')
    parser.add_argument('--older-than', default='90 days')
    parser.add_argument('--runs', type=int, default=3, help='paired rounds (medians are reported)')
    parser.add_argument('--module-only', action='store_true',
                        help='one table, the module only: memory and correctness with many due rows')
    parser.add_argument('--autogroup-nice', type=int, help='raise the benchmark\'s CPU share (see playbook_timing)')
    opts = parser.parse_args()
    with PostgresServer(settings={'shared_buffers': '512MB', 'max_wal_size': '4GB', 'autovacuum': 'off'}) as server:
        conn = psycopg2.connect(server.dsn())
        conn.autocommit = True
        print(machine_line(), flush=True)
        if opts.module_only:
            module_only(server, conn, opts)
        else:
            paired(server, conn, opts)
        conn.close()


if __name__ == '__main__':
    main()
