"""playbooks/capacity_report.yml end to end against real PostgreSQL and Redis with a deep queue."""

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from cerniq_testkit.ansible_run import REPO, run_playbook


def test_capacity_report_flags_the_deep_queue(pg_conn, pg_db, redis_params, redis_client, tmp_path):
    cerniq_schema.apply(pg_conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))
    with pg_conn.cursor() as cur:
        cur.execute("INSERT INTO bronze_contacts (tenant_id, created_at, processed_at) SELECT gen_random_uuid(), "
                    "now() - interval '1 day', now() - interval '1 day' + interval '90 seconds' "
                    "FROM generate_series(1, 25)")
    # 1,500 waiting jobs: over the 1,000 warning threshold of runbook 6.2, under the 5,000 critical one.
    pipe = redis_client.pipeline()
    for start in range(0, 1500, 500):
        pipe.lpush('bull:bronze:ingest:csv:wait', *[str(i) for i in range(start, start + 500)])
    pipe.hset('bull:bronze:ingest:csv:meta', 'version', 'bullmq:5.58.0')
    pipe.execute()
    # 800 waiting in a second queue: under the threshold on its own (summing the queues would flag 2300).
    pipe.lpush('bull:silver:score:quality:wait', *[str(i) for i in range(800)])
    pipe.hset('bull:silver:score:quality:meta', 'version', 'bullmq:5.58.0')
    pipe.execute()
    # No Prometheus: queue depth from the Redis read, connections from PostgreSQL (the rules' definitions).
    result = run_playbook(REPO + '/playbooks/capacity_report.yml', extra_vars=dict(
        cerniq_postgres=pg_db, cerniq_redis=redis_params, cerniq_report_dir=str(tmp_path), cerniq_prometheus_url=''))
    assert result.returncode == 0, result.stdout
    markdown = (tmp_path / 'capacity.md').read_text()
    assert '| Queue depth (waiting) | bronze:ingest:csv | 1500 | > 1000 | > 5000 | WARNING | Add workers |' in markdown
    assert '| Queue depth (waiting) | silver:score:quality | 800 | > 1000 | > 5000 | ok | - |' in markdown
    # Memory and disk only from node_exporter (Prometheus), never the play host's.
    assert '| Memory usage | - | n/a | > 70 | > 85 | unknown | - |' in markdown
    # Runbook 2.4's SQL sees the counts of this read.
    with pg_conn.cursor() as cur:
        cur.execute("SELECT queue_name, waiting FROM bullmq_queue_stats ORDER BY 1")
        assert cur.fetchall() == [('bronze:ingest:csv', 1500), ('silver:score:quality', 800)]
    assert '| 25 | 90 |' in markdown
    assert (tmp_path / 'capacity.html').read_text().startswith('<!DOCTYPE html>')
    assert 'WARNING | Add workers' in result.stdout
