"""Verify cerniq.ops.redis inside the scenario's systemd container."""

SERVICE = "redis-server"
PASSWORD = "mol'ecule \"pa ss\\"


def cli(host, *args, password=PASSWORD):
    """redis-cli with the password in the environment; the reply."""
    command = "REDISCLI_AUTH=%s redis-cli --no-auth-warning " + " ".join(["%s"] * len(args))
    return host.check_output(command, password, *args)


def config(host, name, password=PASSWORD):
    return cli(host, "CONFIG", "GET", name, password=password).splitlines()[1]


def test_service_running_and_enabled(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_password_required(host):
    assert "NOAUTH" in host.check_output("redis-cli PING")
    assert cli(host, "PING") == "PONG"


def test_bullmq_settings_in_force(host):
    assert config(host, "maxmemory-policy") == "noeviction"
    assert config(host, "appendonly") == "yes"
    assert config(host, "bind") == "0.0.0.0"
    assert config(host, "port") == "6379"


def test_settings_file_readable_by_redis_only(host):
    include = host.file("/etc/redis/cerniq.conf")
    assert (include.user, include.group, include.mode) == ("redis", "redis", 0o640)
    assert include.contains("^maxmemory-policy \"noeviction\"$")
    assert host.file("/etc/redis/redis.conf").contains("^include /etc/redis/cerniq.conf$")


def test_password_not_on_any_command_line(host):
    assert "pa ss" not in host.check_output("ps -eo args=")
