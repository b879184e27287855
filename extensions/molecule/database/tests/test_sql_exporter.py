"""Verify cerniq.ops.sql_exporter on the database host.

A module fixture loads known rows (the exporter restarted so its cached queries run on them);
prepare.yml runs a Prometheus whose "sql" job strips sql_exporter's "sql_" prefix (the
relabelling docs/exporters.md asks of the prometheus role), so the stored names are checked end
to end.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import cerniq_testinfra  # noqa: E402

SERVICE = "prometheus-sql-exporter"
ENV_FILE = "/etc/default/prometheus-sql-exporter"
CONFIG = "/etc/prometheus-sql-exporter.yml"
URL = "http://127.0.0.1:9399/metrics"
PROMETHEUS = "http://127.0.0.1:9090/api/v1/query?query="
PASSWORD = "sql 'exporter' pa$$w\\rd"
TENANT_A = "00000000-0000-0000-0000-00000000000a"
TENANT_B = "00000000-0000-0000-0000-00000000000b"

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# Expected gauges: pending company_merge/high 2 (1 overdue), data_quality/normal 1 (0 overdue);
# funnel A 3/2/1, B 1/3/0; batches processing 2 (1 stuck), completed 1; quality buckets 0-10:1,
# 10-20:1, 90-100:2, unscored 1; enrichment last hour anaf 3 attempts / 2 errors, termene 1 / 0.
ROWS = """
TRUNCATE approval_tasks, bronze_contacts, bronze_import_batches, silver_companies, gold_companies,
         silver_enrichment_log CASCADE;
INSERT INTO approval_tasks (approval_type, priority, status, due_at) VALUES
  ('company_merge', 'high', 'pending', now() - interval '1 hour'),
  ('company_merge', 'high', 'pending', now() + interval '1 hour'),
  ('data_quality', 'normal', 'pending', now() + interval '4 hours'),
  ('data_quality', 'normal', 'approved', now() - interval '1 day');
INSERT INTO bronze_import_batches (tenant_id, status, started_at, updated_at) VALUES
  ('{a}', 'processing', now() - interval '2 hours', now() - interval '2 hours'),
  ('{a}', 'processing', now() - interval '5 minutes', now()),
  ('{b}', 'completed', now() - interval '1 day', now() - interval '1 day');
INSERT INTO bronze_contacts (tenant_id) VALUES ('{a}'), ('{a}'), ('{a}'), ('{b}');
INSERT INTO silver_companies (tenant_id, is_master_record, total_quality_score) VALUES
  ('{a}', true, 5), ('{a}', true, 95), ('{a}', false, 50),
  ('{b}', true, 100), ('{b}', true, 10), ('{b}', true, NULL);
INSERT INTO gold_companies (tenant_id) VALUES ('{a}');
INSERT INTO silver_enrichment_log (company_id, source, status, created_at) VALUES
  (gen_random_uuid(), 'anaf', 'error', now() - interval '10 minutes'),
  (gen_random_uuid(), 'anaf', 'timeout', now() - interval '20 minutes'),
  (gen_random_uuid(), 'anaf', 'success', now() - interval '5 minutes'),
  (gen_random_uuid(), 'anaf', 'error', now() - interval '2 hours'),
  (gen_random_uuid(), 'termene', 'success', now() - interval '5 minutes');
""".format(a=TENANT_A, b=TENANT_B)


@pytest.fixture(scope="module", autouse=True)
def known_rows(host):
    """Only these rows in the tables the queries read (the maintenance tests' are done by now),
    then a restart: the exporter runs its queries at start and then on their 1 and 5 minute
    intervals, serving the cached result in between."""
    host.run_test("sudo -u postgres psql -X -v ON_ERROR_STOP=1 -q -d cerniq_db -c %s", ROWS)
    host.run_test("systemctl restart %s", SERVICE)


def fetch(host, url, wait_for):
    return cerniq_testinfra.fetch(host, url, wait_for)


def samples(text, name):
    """[(labels, value)] of every sample of metric ``name`` in exposition text."""
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            found.append((dict(LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return found


def by(series, *keys):
    """{label value (or tuple of values): sample value}."""
    if len(keys) == 1:
        return {labels[keys[0]]: value for labels, value in series}
    return {tuple(labels[k] for k in keys): value for labels, value in series}


def scrape(host):
    return fetch(host, URL, "sql_cerniq_silver_quality_score_companies{")


def test_service_running_as_unprivileged_user(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    assert host.check_output("ps -o user= -p %s", pid) == "prometheus"


def test_files_and_modes(host):
    env = host.file(ENV_FILE)
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert env.contains("PGPASSWORD=")
    config = host.file(CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640)
    assert "exporter' pa" not in config.content_string


def test_password_not_on_command_line(host):
    args = host.check_output("ps -eo args=")
    assert "prometheus-sql-exporter" in args
    assert "pa$$w" not in args


def test_role_is_read_only(host):
    out = host.check_output(
        "runuser -u postgres -- psql -d cerniq_db -tA -c "
        "\"SELECT has_table_privilege('cerniq_sql_exporter', 'approval_tasks', 'SELECT'), "
        "has_table_privilege('cerniq_sql_exporter', 'approval_tasks', 'UPDATE'), "
        "has_table_privilege('cerniq_sql_exporter', 'users', 'SELECT')\""
    )
    assert out == "t|f|f"


def test_approval_tasks_gauges(host):
    metrics = scrape(host)
    pending = by(samples(metrics, "sql_cerniq_approval_tasks_pending"), "approval_type", "priority")
    assert pending == {("company_merge", "high"): 2, ("data_quality", "normal"): 1}
    overdue = by(samples(metrics, "sql_cerniq_approval_tasks_overdue"), "approval_type", "priority")
    assert overdue == {("company_merge", "high"): 1, ("data_quality", "normal"): 0}


def test_pending_query_returns_zero_when_nothing_is_pending(host):
    """The contract query always yields a row: run it after deleting every task, rolled back."""
    config = yaml.safe_load(host.file(CONFIG).content_string)
    queries = {q["name"]: q["query"] for job in config["jobs"] for q in job["queries"]}
    sql = "BEGIN;\nDELETE FROM approval_tasks;\n%s;\nROLLBACK;\n" % queries["cerniq_approval_tasks_pending"].strip()
    out = host.check_output("printf '%%s' %s | runuser -u postgres -- psql -X -q -d cerniq_db -tA", sql)
    assert out.splitlines() == ["none|none|0"]


def test_prometheus_stores_contract_names(host):
    """Through the "sql" job's relabelling, the stored names are exactly those of docs/metrics.md."""
    body = fetch(host, PROMETHEUS + "cerniq_approval_tasks_pending", '"company_merge"')
    result = json.loads(body)["data"]["result"]
    values = {(r["metric"]["approval_type"], r["metric"]["priority"]): float(r["value"][1]) for r in result}
    assert values == {("company_merge", "high"): 2, ("data_quality", "normal"): 1}
    assert all(r["metric"]["__name__"] == "cerniq_approval_tasks_pending" for r in result)
    assert all(r["metric"]["job"] == "sql" for r in result)


def test_pipeline_funnel(host):
    funnel = by(samples(scrape(host), "sql_cerniq_pipeline_records"), "tenant_id", "layer")
    assert funnel == {
        (TENANT_A, "bronze"): 3,
        (TENANT_B, "bronze"): 1,
        (TENANT_A, "silver"): 2,
        (TENANT_B, "silver"): 3,
        (TENANT_A, "gold"): 1,
    }


def test_quality_score_buckets(host):
    metrics = scrape(host)
    buckets = by(samples(metrics, "sql_cerniq_silver_quality_score_companies"), "score_bucket")
    expected = {"%d-%d" % (g * 10, g * 10 + 10): 0 for g in range(10)}
    expected.update({"0-10": 1, "10-20": 1, "90-100": 2})
    assert buckets == expected
    assert [v for _unused, v in samples(metrics, "sql_cerniq_silver_companies_unscored")] == [1]


def test_import_batches(host):
    metrics = scrape(host)
    batches = by(samples(metrics, "sql_cerniq_import_batches"), "status")
    assert batches == {"pending": 0, "processing": 2, "completed": 1, "failed": 0, "cancelled": 0}
    assert [v for _unused, v in samples(metrics, "sql_cerniq_import_batches_stuck")] == [1]


def test_enrichment_last_hour(host):
    metrics = scrape(host)
    assert by(samples(metrics, "sql_cerniq_enrichment_errors_last_hour"), "source") == {"anaf": 2, "termene": 0}
    assert by(samples(metrics, "sql_cerniq_enrichment_attempts_last_hour"), "source") == {"anaf": 3, "termene": 1}


def test_no_query_failed(host):
    failed = samples(scrape(host), "sql_exporter_last_scrape_failed")
    assert failed
    assert all(value == 0 for _unused, value in failed)
