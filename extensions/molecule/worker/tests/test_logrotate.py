"""Verify cerniq.ops.logrotate on a worker host: worker logs rotate, container logs are bounded."""

import json


def test_worker_entry_only_and_valid(host):
    assert host.file("/etc/logrotate.d/cerniq-workers").exists
    assert not host.file("/etc/logrotate.d/cerniq-maintenance").exists  # the database host's
    result = host.run("logrotate -d /etc/logrotate.d/cerniq-workers")
    assert result.rc == 0, result.stderr
    assert "/var/log/cerniq/workers/*.log" in result.stdout + result.stderr


def test_a_forced_rotation_truncates_the_open_log_in_place(host):
    log = "/var/log/cerniq/workers/ingest.log"
    host.run_test("seq 1 50000 > %s", log)
    host.run_test("logrotate -f /etc/logrotate.d/cerniq-workers")
    assert host.file(log).exists and host.file(log).size == 0  # copytruncate: same file, emptied
    rotated = host.file(log + ".1")
    assert rotated.exists and rotated.size > 0


def test_docker_json_file_limits_merged_into_daemon_json(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon == {"data-root": "/srv/docker", "live-restore": True,
                      "log-opts": {"max-size": "50m", "max-file": "5"}}


def test_podman_log_size_max(host):
    conf = host.file("/etc/containers/containers.conf.d/cerniq-logs.conf")
    assert conf.exists and conf.mode == 0o644
    assert "log_size_max = 52428800" in conf.content_string
