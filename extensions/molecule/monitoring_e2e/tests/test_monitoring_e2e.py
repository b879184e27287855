"""The monitoring path across three containers, as playbooks/site.yml builds it.

Prometheus (monitor) scrapes every exporter on the database and Redis containers by
name; injected incidents fire the shipped rules (unchanged thresholds and ``for:``)
and reach Alertmanager, which routes them by severity (runbook 5.1):

* overdue approval tasks -> sql_exporter gauge -> HITLTasksOverdue (sev3) -> team-chat
* > 5000 waiting jobs in bronze:ingest:csv -> redis_exporter key size ->
  BullMQQueueDepth (sev2, escalation oncall, ``for: 5m``) -> oncall-pager

Waits are bounded polls (the rules' ``for:`` plus scrape/query intervals), never
timing assertions.
"""

import json
import sys
import time
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import cerniq_testinfra  # noqa: E402

DB = testinfra.get_host("podman://cerniq-e2e-db")
REDIS = testinfra.get_host("podman://cerniq-e2e-redis")
MONITOR = testinfra.get_host("podman://cerniq-e2e-monitor")

REDIS_PASSWORD = "e2e-cerniq-redis"  # molecule.yml group_vars
QUEUE = "bronze:ingest:csv"
QUEUE_KEY = f"bull:{QUEUE}:wait"
QUEUE_JOBS = 5200  # > 5000: the sev2 BullMQQueueDepth threshold
OVERDUE_TASKS = 3


def get_json(url):
    """GET a URL from inside the monitor container (the image has no curl)."""
    return json.loads(cerniq_testinfra.fetch(MONITOR, url))


def prom(path):
    return get_json("http://127.0.0.1:9090" + path)["data"]


def wait_for(check, timeout, interval=5):
    """Poll check() until it returns a truthy value; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


EXPECTED_TARGETS = {
    "node": {"cerniq-e2e-db:9100", "cerniq-e2e-redis:9100", "cerniq-e2e-monitor:9100"},
    "postgres": {"cerniq-e2e-db:9187"},
    "sql": {"cerniq-e2e-db:9399"},
    "redis": {"cerniq-e2e-redis:9121"},
    "alertmanager": {"127.0.0.1:9093"},
}


def targets_by_job():
    jobs = {}
    for target in prom("/api/v1/targets?state=active")["activeTargets"]:
        jobs.setdefault(target["labels"]["job"], {})[target["labels"]["instance"]] = target["health"]
    return jobs


def test_prometheus_scrapes_every_exporter_across_containers():
    def all_up():
        jobs = targets_by_job()
        ok = all(set(jobs.get(job, {})) == instances for job, instances in EXPECTED_TARGETS.items()) and all(
            health == "up" for instances in jobs.values() for health in instances.values()
        )
        return jobs if ok else None

    jobs = wait_for(all_up, timeout=180) or targets_by_job()
    for job, instances in EXPECTED_TARGETS.items():
        assert set(jobs.get(job, {})) == instances, (job, jobs.get(job))
    down = {(job, inst): h for job, insts in jobs.items() for inst, h in insts.items() if h != "up"}
    assert not down, down
    # No workers in this scenario: the job exists but has no target.
    assert "cerniq-workers" not in jobs

    # The same through the `up` series: 1 for every current target. (Series of the
    # package's default configuration, before the role's reload, may linger while stale.)
    up = {(s["metric"]["job"], s["metric"]["instance"]): s["value"][1] for s in prom("/api/v1/query?query=up")["result"]}
    current = {(job, inst) for job, insts in jobs.items() for inst in insts}
    assert {key: up.get(key) for key in current} == dict.fromkeys(current, "1")


def test_exporters_reach_their_backends():
    for query in ("pg_up", "redis_up"):
        result = wait_for(lambda q=query: prom("/api/v1/query?query=" + q)["result"], timeout=60)
        assert result, query
        assert {s["value"][1] for s in result} == {"1"}, (query, result)
    # The BullMQ relabelling of the redis job: one series per queue and state.
    queues = wait_for(lambda: prom("/api/v1/query?query=bullmq_queue_jobs")["result"], timeout=60)
    assert {s["metric"]["queue"] for s in queues} >= {QUEUE}


def test_sql_gauges_arrive_under_their_contract_names():
    # docs/metrics.md: cerniq_approval_tasks_* (HITLMetricsAbsent fires without them).
    result = wait_for(lambda: prom("/api/v1/query?query=cerniq_approval_tasks_overdue")["result"], timeout=120)
    names = prom("/api/v1/label/__name__/values")
    assert result, [n for n in names if "approval" in n]


def active_alerts():
    return prom("/api/v1/alerts")["alerts"]


def matching(alerts, **labels):
    return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]


HITL = {"alertname": "HITLTasksOverdue", "approval_type": "company_merge", "priority": "high"}
DEPTH = {"alertname": "BullMQQueueDepth", "queue": QUEUE, "severity": "sev2", "escalation": "oncall"}


@pytest.fixture(scope="module")
def injected():
    """Insert overdue approval tasks and fill a queue once; return the deadline of the waits."""
    alerts = active_alerts()
    # Before: the database and the queue are empty, neither alert is active.
    assert not matching(alerts, alertname="HITLTasksOverdue"), alerts
    assert not matching(alerts, alertname="BullMQQueueDepth"), alerts
    DB.check_output(
        "runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d cerniq_db -c %s",
        "DELETE FROM approval_tasks WHERE metadata @> '{\"e2e\": true}'; "
        "INSERT INTO approval_tasks (approval_type, priority, status, due_at, metadata) "
        "SELECT 'company_merge', 'high', 'pending', now() - interval '2 hours', '{\"e2e\": true}' "
        f"FROM generate_series(1, {OVERDUE_TASKS})",
    )
    REDIS.check_output(
        "REDISCLI_AUTH=%s sh -c %s",
        REDIS_PASSWORD,
        f"redis-cli DEL {QUEUE_KEY} >/dev/null && "
        f"seq 1 {QUEUE_JOBS} | xargs -n 1000 redis-cli LPUSH {QUEUE_KEY} >/dev/null",
    )
    assert REDIS.check_output(f"REDISCLI_AUTH={REDIS_PASSWORD} redis-cli LLEN {QUEUE_KEY}") == str(QUEUE_JOBS)
    # for: 5m on both rules, plus the SQL query interval (1m) and scrapes: bounded 10 min.
    return time.monotonic() + 600


def firing(labels, deadline):
    def check():
        return [a for a in matching(active_alerts(), **labels) if a["state"] == "firing"]

    return wait_for(check, timeout=max(deadline - time.monotonic(), 0), interval=10)


def received_by(labels):
    """Receiver names of the Alertmanager alerts with these labels (bounded wait)."""
    def check():
        return matching(get_json("http://127.0.0.1:9093/api/v2/alerts"), **labels)

    alerts = wait_for(check, timeout=120)
    return {r["name"] for a in alerts for r in a["receivers"]}


def test_deep_queue_fires_sev2_and_pages_oncall(injected):
    alerts = firing(DEPTH, injected)
    assert alerts, [(a["labels"], a["state"]) for a in active_alerts()]
    assert float(alerts[0]["value"]) == QUEUE_JOBS
    assert alerts[0]["labels"]["service"] == "queue"
    assert received_by(DEPTH) == {"oncall-pager"}


def test_overdue_approvals_fire_and_reach_team_chat(injected):
    alerts = firing(HITL, injected)
    assert alerts, [(a["labels"], a["state"]) for a in active_alerts()]
    assert float(alerts[0]["value"]) == OVERDUE_TASKS
    assert alerts[0]["labels"]["severity"] == "sev3"
    assert alerts[0]["labels"]["service"] == "hitl"
    assert received_by(HITL) == {"team-chat"}
