"""Inventory variables reach the playbooks (the settings are role defaults, not play vars)."""

import sys

import yaml

from cerniq_testkit.ansible_run import REPO, run_playbook


def _inventory(tmp_path, host_vars):
    host_vars = dict(host_vars, ansible_connection='local', ansible_python_interpreter=sys.executable)
    path = tmp_path / 'inventory.yml'
    path.write_text(yaml.safe_dump({'all': {'hosts': {'localhost': host_vars}}}))
    return str(path)


def test_connection_set_in_the_inventory_is_used(pg_db, pg_conn, tmp_path):
    with pg_conn.cursor() as cur:
        cur.execute('CREATE TABLE t (id int primary key)')
    result = run_playbook(REPO + '/playbooks/index_report.yml', inventory=_inventory(tmp_path, {'cerniq_postgres': pg_db}))
    assert result.returncode == 0, result.stdout
    assert pg_db['login_db'] in result.stdout or 't_pkey' in result.stdout


def test_wrong_type_in_the_inventory_is_refused_before_anything_runs(pg_db, tmp_path):
    result = run_playbook(REPO + '/playbooks/index_report.yml',
                          inventory=_inventory(tmp_path, {'cerniq_postgres': pg_db, 'cerniq_index_report_top': 'many'}))
    assert result.returncode != 0
    assert 'cerniq_index_report_top' in result.stdout and 'Validating arguments against arg spec' in result.stdout
