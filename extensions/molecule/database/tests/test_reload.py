"""The role under systemd: a setting PostgreSQL can reload is applied by a reload (same
postmaster), one it marks pending_restart by a restart, and not at all with
postgresql_restart_allowed false (the run names it); a password changed behind the role's back
is set again. Runs converge.yml (its postgresql tag) again against the converged container,
three times in all."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from cerniq_testinfra import main_pid, run_playbook  # noqa: E402
from test_postgresql import PASSWORD, SERVICE, sql  # noqa: E402

CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"


def converge(**extra_vars):
    # The postgresql role's tasks only: the exporter is not what these tests change.
    result = run_playbook(CONVERGE, "--tags", "postgresql", "-e", json.dumps(extra_vars))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def settings(**more):
    return {"postgresql_settings": dict({"shared_preload_libraries": "pg_stat_statements"}, **more)}


def test_reloadable_setting_is_reloaded_and_a_password_changed_behind_the_role_set_again(host):
    # One converge for both (each converge costs a full run of the play): neither restarts.
    sql(host, "ALTER ROLE cerniq PASSWORD 'someone-else'")
    work_mem = "5MB" if sql(host, "SHOW work_mem") != "5MB" else "6MB"
    pid = main_pid(host, SERVICE)
    out = converge(**settings(work_mem=work_mem, max_connections=sql(host, "SHOW max_connections")))
    assert "RUNNING HANDLER [cerniq.ops.postgresql : Reload PostgreSQL]" in out
    assert sql(host, "SHOW work_mem") == work_mem
    assert main_pid(host, SERVICE) == pid
    assert "changed: [" in out.split("Create the login role", 1)[1].split("TASK [", 1)[0]
    who = host.run("PGPASSWORD=%s psql -X -w -tA -c 'SELECT current_user' 'host=127.0.0.1 dbname=cerniq_db user=cerniq'",
                   PASSWORD)
    assert who.stdout.strip() == "cerniq", who.stderr


def test_pending_restart_setting_waits_when_not_allowed_and_restarts_when_allowed(host):
    # The first converge reloads, finds max_connections pending_restart in the same run and only
    # names it; the second (allowed, the file unchanged) restarts for it - the path a restart
    # allowed from the start takes too (reload, pending_restart, restart).
    current = sql(host, "SHOW max_connections")
    wanted = "130" if current != "130" else "140"
    pid = main_pid(host, SERVICE)
    out = converge(postgresql_restart_allowed=False, **settings(max_connections=wanted))
    assert "RUNNING HANDLER [cerniq.ops.postgresql : Reload PostgreSQL]" in out
    assert "applies max_connections only after a" in out
    assert main_pid(host, SERVICE) == pid
    assert sql(host, "SHOW max_connections") == current
    assert sql(host, "SELECT name FROM pg_settings WHERE pending_restart") == "max_connections"
    converge(**settings(max_connections=wanted))
    assert sql(host, "SHOW max_connections") == wanted
    assert sql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"
    assert main_pid(host, SERVICE) != pid
