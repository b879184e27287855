"""Verify cerniq.ops.worker_metrics_stub inside the scenario's systemd container."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import cerniq_testinfra  # noqa: E402

SERVICE = "cerniq-worker-metrics-stub"


def test_service_running_as_a_dynamic_user(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled
    user = host.check_output("ps -o user= -p %s", cerniq_testinfra.main_pid(host, SERVICE))
    assert user not in ("root", "0")


def test_counters_per_queue_from_the_settings(host):
    body = cerniq_testinfra.fetch(host, "http://127.0.0.1:9464/metrics", "cerniq_worker_jobs_processed_total")
    samples = sorted(line for line in body.splitlines() if line.startswith("cerniq_worker_jobs_processed_total{"))
    assert samples == [
        'cerniq_worker_jobs_processed_total{queue="bronze:ingest:csv",status="completed"} 0',
        'cerniq_worker_jobs_processed_total{queue="bronze:ingest:csv",status="failed"} 0',
        'cerniq_worker_jobs_processed_total{queue="silver:score:quality",status="completed"} 0',
        'cerniq_worker_jobs_processed_total{queue="silver:score:quality",status="failed"} 0',
    ]
    assert "not a real worker" in body


def test_sandboxed(host):
    props = host.check_output("systemctl show -p DynamicUser -p ProtectSystem -p NoNewPrivileges %s", SERVICE)
    assert "DynamicUser=yes" in props
    assert "ProtectSystem=strict" in props
    assert "NoNewPrivileges=yes" in props
