"""Integration layer: the longest files start first.

`make test` runs this layer with pytest-xdist (`-n 3 --dist loadfile`: a file's tests stay in one
worker, so its module fixtures are built once). Workers take files in collection order; a long file
collected last keeps one worker busy after the others are done. These files take 35-160 s each
(serial `--durations` on this machine), so they are handed out first; the order of tests within a file is
unchanged.
"""

LONGEST_FIRST = (
    'test_worker_container.py',
    'test_incident_info.py',
    'test_maintenance_windows.py',
    'test_prometheus_role.py',
    'test_cerniq_runbook.py',
    'test_logrotate_role.py',
    'test_pg_maintenance_playbooks.py',
    'test_restart_workers.py',
    'test_rules.py',
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the rest keep their order
