"""Hostile input for the modules that talk to more than a database: incident_info (a real Prometheus firing a
real alert into a real Alertmanager, and the database), pg_backup_verify (real dumps, good and damaged,
restored into scratch databases) and signoz_dashboard (SigNoz cannot run here: the stand-in of
tests/integration/test_signoz_dashboard.py, which keeps state and checks the API key and shapes).
"""

import copy

import psycopg2
from hypothesis import assume, given, strategies as st
import pytest

from tests.hostile import known
from tests.hostile.argspec import module_args
from tests.hostile.harness import run_example
from tests.hostile.invariants import INVARIANTS, pg_snapshotter
from tests.hostile.pg_states import (
    CERNIQ, CERNIQ_CORRUPTIONS, PG_CONNECTION_HOSTILE, TEMPLATES, corrupt, corruptions)
from tests.hostile.profiles import budget
from cerniq_testkit.monitoring import AlertmanagerServer, PrometheusServer

RULES = """
groups:
  - name: hostile
    rules:
      - alert: HostileAlwaysFiring
        expr: vector(1)
        labels: {severity: SEV2, service: enrichment}
        annotations: {summary: always firing}
"""


@pytest.fixture(scope='module')
def monitoring():
    with AlertmanagerServer() as alertmanager:
        with PrometheusServer(RULES, alertmanager.url) as prometheus:
            prometheus.wait_for(lambda: prometheus.query('ALERTS{alertstate="firing"}'), 'the alert firing')
            yield prometheus, alertmanager


def _pg_example(pg_workspace, data, module, hints, superuser=False):
    pool = CERNIQ_CORRUPTIONS
    names = data.draw(corruptions(pool), label='corruptions')
    pg_workspace.template(CERNIQ, TEMPLATES[CERNIQ])
    params, conn = pg_workspace.fresh(CERNIQ)
    if superuser:
        params = pg_workspace.server.params(params['login_db'], superuser=True)
    args = data.draw(module_args(module, hints, fixed=params, connection_hostile=PG_CONNECTION_HOSTILE),
                     label='args')
    check_mode = data.draw(st.booleans(), label='check_mode')
    state = dict(corruptions=names)
    assume(not known.matches(module, args, state, check_mode))
    try:
        corrupt(conn, pool, names)
    except psycopg2.Error:
        assume(False)   # a combination that cannot be applied (an update a corruption trigger rejects)
    example = run_example(module, args, check_mode, state, pg_snapshotter(conn))
    example.assert_ok(INVARIANTS[module])


@budget(12)
@given(data=st.data())
def test_incident_info(pg_workspace, monitoring, data):
    prometheus, alertmanager = monitoring
    urls = [prometheus.url] * 3 + ['http://127.0.0.1:9', 'not a url', prometheus.url + '/nope']
    hints = dict(prometheus_url=st.sampled_from(urls),
                 alertmanager_url=st.sampled_from([None, alertmanager.url, 'http://127.0.0.1:9']),
                 lookback=st.sampled_from(['6h', '6h', '1h', '1m', 360]), step=st.sampled_from(['30s', '1s', '1h']),
                 start=st.sampled_from([None] * 4 + ['2026-01-01T00:00:00Z', 'yesterday', '2999-01-01T00:00:00Z']),
                 end=st.sampled_from([None] * 5 + ['2020-01-01T00:00:00Z', 'not a time']),
                 matchers=st.sampled_from([{}, dict(severity='SEV2'), dict(nope='x')]),
                 impact_queries=st.sampled_from([{}, dict(n='SELECT count(*) FROM users'),
                                                 dict(bad='DELETE FROM users'), dict(two='SELECT 1; SELECT 2'),
                                                 dict(p='SELECT %(start)s::text')]),
                 timeout=st.sampled_from(['5s', '5s', 5]))
    _pg_example(pg_workspace, data, 'incident_info', hints)


@budget(12)
@given(data=st.data())
def test_pg_backup_verify(pg_workspace, backups, data):
    paths = [str(backups / name) for name in ('good', 'good', 'plain', 'damaged', 'empty', 'garbage')]
    hints = dict(path=st.sampled_from(paths + [str(backups / 'good' / 'cerniq.dump'), '/nonexistent']),
                 restore=st.booleans(), tables=st.sampled_from([[], ['users', 'approval_tasks'], ['missing'],
                                                                ['public.users']]),
                 scratch_db=st.sampled_from(['hostile_restore'] * 3 + ['hostile_work', 'postgres', 'template1',
                                                                       'hostile_tpl_cerniq', '"q"']),
                 textfile_path=st.sampled_from([None, str(backups / 'metrics' / 'backup.prom'),
                                                '/nonexistent/dir/backup.prom']),
                 max_age=st.sampled_from([None, '1h', '-1h', '0s', 26]),
                 list_command=st.sampled_from([None]))
    _pg_example(pg_workspace, data, 'pg_backup_verify', hints, superuser=True)


def _signoz_state(fake):
    return copy.deepcopy(fake.dashboards)


@pytest.fixture(scope='module')
def signoz_fake():
    from tests.integration.test_signoz_dashboard import FakeSignoz
    with FakeSignoz() as fake:
        yield fake


DASHBOARD = dict(title='Hostile', layout=[dict(i='1', x=0, y=0, w=4, h=3)],
                 widgets=[dict(id='1', title='w', query=dict(expr='up'))])


@budget(12)
@given(data=st.data())
def test_signoz_dashboard(signoz_fake, data):
    from tests.integration.test_signoz_dashboard import API_KEY
    existing = data.draw(st.lists(st.sampled_from(['Hostile', 'Other', 'Hostile']), max_size=3), label='stored')
    signoz_fake.dashboards.clear()
    for index, title in enumerate(existing):
        signoz_fake.dashboards['00000000-0000-0000-0000-00000000000%d' % index] = dict(
            id=index, uuid='00000000-0000-0000-0000-00000000000%d' % index, data=dict(DASHBOARD, title=title))
    hints = dict(url=st.sampled_from([signoz_fake.url] * 4 + ['http://127.0.0.1:9', 'ftp://x', signoz_fake.url + '/x']),
                 api_key=st.sampled_from([API_KEY] * 6 + ['wrong', '']),
                 dashboard=st.sampled_from([DASHBOARD] * 4 + [dict(DASHBOARD, layout='x'), dict(title=''), {}]),
                 title=st.sampled_from([None, 'Hostile', 'Other', 'Absent']), timeout=st.sampled_from(['5s', '5s', 5]))
    args = data.draw(module_args('signoz_dashboard', hints), label='args')
    check_mode = data.draw(st.booleans(), label='check_mode')
    state = dict(stored=existing)
    assume(not known.matches('signoz_dashboard', args, state, check_mode))
    example = run_example('signoz_dashboard', args, check_mode, state, lambda: _signoz_state(signoz_fake))
    example.assert_ok(INVARIANTS['signoz_dashboard'])


@pytest.fixture(scope='module')
def worker_podman():
    """A real podman container standing in for a worker (created with an env file, -e and a label)."""
    from cerniq_testkit.worker_containers import HAVE_PODMAN, podman, remove, worker_image
    if not HAVE_PODMAN:
        pytest.skip('podman not installed')
    import os
    name = 'cerniq-hostile-worker-%d' % os.getpid()
    podman('run', '-d', '--name', name, '-e', 'KEEP=me', '-e', 'ANAF_CONCURRENCY=4', worker_image(),
           'sleep', 'infinity')
    yield name
    remove(name)
    remove(name + '-cerniq-old')


def _worker_state(name):
    from cerniq_testkit.worker_containers import podman
    import json
    found = json.loads(podman('ps', '-a', '--format', 'json', '--filter', 'name=^%s' % name) or '[]')
    return sorted((c['Names'][0], c['Id'], c['State']) for c in found)


@budget(6)
@given(data=st.data())
def test_worker_container(worker_podman, data):
    from cerniq_testkit.worker_containers import CONTAINERS_CONF
    hints = dict(name=st.sampled_from([worker_podman] * 4 + ['cerniq-hostile-absent', 'a/b', ' ', '']),
                 runtime=st.sampled_from(['podman'] * 4 + ['docker']),
                 env=st.sampled_from([[], ['ANAF_CONCURRENCY=1'], ['ANAF_CONCURRENCY=4'], ['KEEP=other'],
                                      ['=x'], ['1A=2'], ['A=b\nc'], ['TERMENE_CONCURRENCY=5', 'ANAF_CONCURRENCY=2']]),
                 stop_timeout=st.sampled_from(['0s', '1s', '1s', '10', '2h', 'soon']),
                 docker_host=st.sampled_from([None, 'unix:///nonexistent/docker.sock', 'tcp://127.0.0.1:9']),
                 podman_path=st.sampled_from(['podman'] * 4 + ['/nonexistent/podman']),
                 compose_command=st.sampled_from([None, None, [], ['']]))
    args = data.draw(module_args('worker_container', hints), label='args')
    check_mode = data.draw(st.booleans(), label='check_mode')
    state = dict(container=worker_podman)
    assume(not known.matches('worker_container', args, state, check_mode))
    example = run_example('worker_container', args, check_mode, state, lambda: _worker_state(worker_podman),
                          env={'CONTAINERS_CONF': CONTAINERS_CONF})
    example.assert_ok(INVARIANTS['worker_container'])
