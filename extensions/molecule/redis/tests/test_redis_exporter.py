"""Verify cerniq.ops.redis_exporter on the Redis host, beside the Redis of cerniq.ops.redis."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import cerniq_testinfra  # noqa: E402
from test_redis import PASSWORD, cli  # noqa: E402

SERVICE = "prometheus-redis-exporter"
ENV_FILE = "/etc/default/prometheus-redis-exporter"
URL = "http://127.0.0.1:9121/metrics"
QUEUES = [
    "bronze:ingest:csv",
    "bronze:ingest:xlsx",
    "silver:enrich:anaf-fiscal-status",
    "silver:enrich:termene",
    "silver:score:quality",
]
STATES = ["wait", "active", "paused", "prioritized", "delayed", "failed", "completed", "waiting-children"]


@pytest.fixture(scope="module", autouse=True)
def queued_jobs(host):
    """Three ids waiting in bronze:ingest:csv and one delayed job, as BullMQ keeps them."""
    cli(host, "DEL", "bull:bronze:ingest:csv:wait", "bull:bronze:ingest:csv:delayed")
    cli(host, "LPUSH", "bull:bronze:ingest:csv:wait", "1", "2", "3")
    cli(host, "ZADD", "bull:bronze:ingest:csv:delayed", "1", "4")
    yield
    cli(host, "DEL", "bull:bronze:ingest:csv:wait", "bull:bronze:ingest:csv:delayed")


def scrape(host, wait_for="redis_up 1"):
    return cerniq_testinfra.fetch(host, URL, wait_for, attempts=30)


def key_sizes(metrics):
    """{key: value} of every redis_key_size series."""
    pattern = re.compile(r'^redis_key_size\{db="db0",key="([^"]+)"\} (\S+)$')
    return {m.group(1): float(m.group(2)) for m in map(pattern.match, metrics.splitlines()) if m}


def main_pid(host):
    return cerniq_testinfra.main_pid(host, SERVICE)


def test_service_running_as_unprivileged_user(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled
    assert host.check_output("ps -o user= -p %s", main_pid(host)) == "prometheus"


def test_env_file_is_root_only(host):
    env = host.file(ENV_FILE)
    assert env.user == "root"
    assert env.group == "root"
    assert env.mode == 0o600
    assert env.contains("REDIS_PASSWORD=")


def test_password_not_on_command_line(host):
    args = host.check_output("ps -eo args=")
    assert "prometheus-redis-exporter" in args
    assert PASSWORD not in args


def test_check_single_keys_on_command_line(host):
    cmdline = host.check_output("tr '\\0' '\\n' < /proc/%s/cmdline", main_pid(host)).splitlines()
    flags = [arg for arg in cmdline if arg.startswith("-check-single-keys=")]
    assert len(flags) == 1
    keys = flags[0].split("=", 1)[1].split(",")
    assert keys == [f"bull:{q}:{s}" for q in QUEUES for s in STATES]
    assert not any(arg.startswith("-check-keys") for arg in cmdline)


def test_scrape_has_redis_up(host):
    assert "redis_up 1" in scrape(host).splitlines()


def test_scrape_has_queue_key_sizes(host):
    sizes = key_sizes(scrape(host, 'key="bull:bronze:ingest:csv:wait"'))
    assert sizes["bull:bronze:ingest:csv:wait"] == 3
    assert sizes["bull:bronze:ingest:csv:delayed"] == 1
    # Keys that do not exist (drained queues) read 0, not absent.
    assert sizes["bull:silver:score:quality:wait"] == 0
    assert len(sizes) == len(QUEUES) * len(STATES)


def test_reload_does_not_stop_the_exporter(host):
    host.run("systemctl reload %s", SERVICE)
    assert host.service(SERVICE).is_running
