"""Verify cerniq.ops.postgresql inside the scenario's systemd container."""

from pathlib import Path

SERVICE = "postgresql@15-main"
PASSWORD = "mol'ecule pa$$ \\w0rd"
MIGRATIONS = sorted(p.name for p in (Path(__file__).resolve().parents[4] / "schema" / "migrations").glob("[0-9]*.sql"))


def sql(host, query, database="postgres"):
    """One value, read as the postgres superuser."""
    return host.check_output("sudo -u postgres psql -X -tA -d %s -c %s", database, query)


def test_service_running_and_enabled(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_settings_file_and_pg_stat_statements_loaded(host):
    conf = host.file("/etc/postgresql/15/main/conf.d/cerniq.conf")
    assert conf.user == "postgres"
    assert conf.contains("^shared_preload_libraries = 'pg_stat_statements'$")
    assert sql(host, "SHOW shared_preload_libraries") == "pg_stat_statements"
    assert sql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_owner_logs_in_over_tcp_with_its_password(host):
    who = host.run("PGPASSWORD=%s psql -X -w -tA -c 'SELECT current_user' 'host=127.0.0.1 dbname=cerniq_db user=cerniq'",
                   PASSWORD)
    assert who.rc == 0, who.stderr
    assert who.stdout.strip() == "cerniq"
    wrong = host.run("PGPASSWORD=wrong psql -X -w -tA -c 'SELECT 1' 'host=127.0.0.1 dbname=cerniq_db user=cerniq'")
    assert wrong.rc != 0


def test_database_owned_by_the_owner(host):
    assert sql(host, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'cerniq_db'") == "cerniq"
    assert sql(host, "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = 'cerniq'") == "f"


def test_every_migration_recorded_once(host):
    recorded = sql(host, "SELECT string_agg(name, ',' ORDER BY name) FROM schema_migrations", "cerniq_db")
    assert recorded.split(",") == MIGRATIONS
    assert sql(host, "SELECT to_regclass('public.approval_tasks') IS NOT NULL", "cerniq_db") == "t"


def test_no_statement_with_the_password_in_the_server_log(host):
    log = host.check_output("cat /var/log/postgresql/postgresql-15-main.log")
    assert "pa$$" not in log
