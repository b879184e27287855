"""cerniq.ops.alertmanager_silence and alertmanager_silence_info against real Alertmanager 0.25
processes: a single one, and a two-member cluster gossiping on loopback."""

import datetime
import shutil
import time

import pytest

from cerniq_testkit.ansible_run import run_module
from cerniq_testkit.monitoring import AlertmanagerCluster, AlertmanagerServer, PrometheusServer

pytestmark = pytest.mark.skipif(shutil.which('prometheus-alertmanager') is None and shutil.which('alertmanager') is None,
                                reason='Alertmanager (Debian prometheus-alertmanager) not installed')

WORKER = ['alertname="WorkerDown"', 'instance="worker1:9464"']
COMMENT = 'cerniq.ops restart of cerniq-workers-ingest'


@pytest.fixture(scope='module')
def alertmanager():
    with AlertmanagerServer() as server:
        yield server


def _args(server, **extra):
    args = dict(url=server.url if isinstance(server, AlertmanagerServer) else server.urls, matchers=WORKER,
                comment=COMMENT, duration='10m')
    args.update(extra)
    return {key: value for key, value in args.items() if value is not None}


def live(server, comment=COMMENT):
    return [s for s in server.silences() if s['comment'] == comment and s['status']['state'] in ('active', 'pending')]


def _end(silence):
    return datetime.datetime.fromisoformat(silence['endsAt'].replace('Z', '+00:00'))


def test_created_twice_exists_once(alertmanager):
    comment = 'created twice'
    check = run_module('alertmanager_silence', _args(alertmanager, comment=comment), check_mode=True, diff=True)
    assert not check.failed, check
    assert check['changed'] and check['action'] == 'created' and check['silence']['id'] is None
    assert check['diff']['before'] == {} and check['diff']['after']['matchers'] == WORKER
    assert live(alertmanager, comment) == []  # check mode sent nothing

    first = run_module('alertmanager_silence', _args(alertmanager, comment=comment), diff=True)
    assert not first.failed, first
    assert first['changed'] and first['action'] == 'created'
    silence = first['silence']
    assert silence['state'] == 'active' and silence['created_by'] == 'cerniq.ops'
    assert silence['matchers'] == WORKER
    length = _end(live(alertmanager, comment)[0]) - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=9) < length <= datetime.timedelta(minutes=10)

    # Same identity, matchers in another order: the same silence, nothing sent.
    second = run_module('alertmanager_silence', _args(alertmanager, comment=comment, matchers=WORKER[::-1]))
    assert not second.failed, second
    assert second['changed'] is False and second['action'] == 'unchanged'
    assert second['silence']['id'] == silence['id']
    assert [s['id'] for s in live(alertmanager, comment)] == [silence['id']]


def test_extend_shorten_expire_keep_one_silence(alertmanager):
    comment = 'extend and expire'
    created = run_module('alertmanager_silence', _args(alertmanager, comment=comment))
    silence_id = created['silence']['id']
    end = _end(live(alertmanager, comment)[0])

    extended = run_module('alertmanager_silence', _args(alertmanager, comment=comment, duration='1h'), diff=True)
    assert not extended.failed, extended
    assert extended['action'] == 'extended' and extended['silence']['id'] == silence_id
    assert extended['diff']['before']['ends_at'] != extended['diff']['after']['ends_at']
    [stored] = live(alertmanager, comment)
    assert stored['id'] == silence_id and _end(stored) - end > datetime.timedelta(minutes=49)
    assert run_module('alertmanager_silence', _args(alertmanager, comment=comment, duration='1h'))['changed'] is False

    shortened = run_module('alertmanager_silence', _args(alertmanager, comment=comment, duration='20m'))
    assert shortened['action'] == 'shortened' and len(live(alertmanager, comment)) == 1

    preview = run_module('alertmanager_silence', _args(alertmanager, comment=comment, state='expired'), check_mode=True)
    assert preview['changed'] and preview['action'] == 'expired' and len(live(alertmanager, comment)) == 1

    expired = run_module('alertmanager_silence', _args(alertmanager, comment=comment, state='expired'))
    assert not expired.failed, expired
    assert expired['changed'] and expired['silence']['id'] == silence_id
    assert live(alertmanager, comment) == []
    assert [s['status']['state'] for s in alertmanager.silences() if s['id'] == silence_id] == ['expired']
    again = run_module('alertmanager_silence', _args(alertmanager, comment=comment, state='expired'))
    assert again['changed'] is False and again['action'] == 'unchanged'


def test_duplicates_made_by_hand_are_expired(alertmanager):
    import json
    import urllib.request
    comment = 'duplicated by hand'
    now = datetime.datetime.now(datetime.timezone.utc)
    for minutes in (15, 30):
        body = dict(matchers=[dict(name='alertname', value='WorkerDown', isRegex=False),
                              dict(name='instance', value='worker1:9464', isRegex=False)],
                    startsAt=now.isoformat(), endsAt=(now + datetime.timedelta(minutes=minutes)).isoformat(),
                    createdBy='cerniq.ops', comment=comment)
        request = urllib.request.Request(alertmanager.url + '/api/v2/silences', data=json.dumps(body).encode(),
                                         headers={'Content-Type': 'application/json'}, method='POST')
        urllib.request.urlopen(request, timeout=5).close()
    assert len(live(alertmanager, comment)) == 2
    result = run_module('alertmanager_silence', _args(alertmanager, comment=comment, duration='30m'))
    assert not result.failed, result
    assert result['changed'] and len(result['expired_duplicates']) == 1
    assert [s['id'] for s in live(alertmanager, comment)] == [result['silence']['id']]


@pytest.mark.parametrize('args, message', [
    (dict(matchers=['alertname=~".*"']), 'refusing a blanket silence'),
    (dict(matchers=['alertname=~".*"', 'instance!="x"']), 'refusing a blanket silence'),
    (dict(matchers=[]), 'a silence needs at least one matcher'),
    (dict(matchers=['alertname WorkerDown']), 'expected name="value"'),
    (dict(matchers=['job=~"(unclosed"']), 'invalid regular expression'),
    (dict(duration='30'), "duration: '30' is not a duration with a unit"),
    (dict(duration=None, ends_at='2001-01-01T00:00:00Z'), 'which is not in the future'),
    (dict(duration=None, ends_at='next tuesday'), 'cannot read'),
    (dict(url='http://127.0.0.1:1'), 'no Alertmanager answers: http://127.0.0.1:1'),
])
def test_bad_input_changes_nothing(alertmanager, args, message):
    before = alertmanager.silences()
    result = run_module('alertmanager_silence', _args(alertmanager, comment='bad input', **args))
    assert result.failed and message in result['msg'], result
    assert 'Traceback' not in result['msg'] and '\n' not in result['msg']
    assert alertmanager.silences() == before


def test_alert_in_the_window_is_silenced_one_outside_its_matchers_is_not():
    rules = """
groups:
  - name: silence-test
    rules:
      - alert: WorkerDown
        expr: label_replace(vector(1), "instance", "worker1:9464", "", "")
        labels: {severity: sev3}
      - alert: WorkerDown
        expr: label_replace(vector(1), "instance", "worker2:9464", "", "")
        labels: {severity: sev3}
"""
    # PrometheusServer resends firing alerts every second (its first notification may be dropped).
    with AlertmanagerServer() as alertmanager, PrometheusServer(rules, alertmanager.url):
        alertmanager.wait_for(lambda: len(alertmanager.alerts()) == 2, 'both alerts delivered')
        created = run_module('alertmanager_silence', _args(alertmanager))
        assert not created.failed, created

        def states():
            return {a['labels']['instance']: (a['status']['state'], a['status']['silencedBy'])
                    for a in alertmanager.alerts()}
        alertmanager.wait_for(lambda: states()['worker1:9464'][0] == 'suppressed', 'worker1 suppressed')
        assert states() == {'worker1:9464': ('suppressed', [created['silence']['id']]),
                            'worker2:9464': ('active', [])}
        # The info module answers the same question by labels.
        covering = run_module('alertmanager_silence_info', dict(url=alertmanager.url, labels={
            'alertname': 'WorkerDown', 'instance': 'worker1:9464', 'severity': 'sev3'}))
        assert [s['id'] for s in covering['silences']] == [created['silence']['id']]
        outside = run_module('alertmanager_silence_info', dict(url=alertmanager.url, labels={
            'alertname': 'WorkerDown', 'instance': 'worker2:9464', 'severity': 'sev3'}))
        assert outside['silences'] == []
        # Expired: worker1 pages again.
        assert run_module('alertmanager_silence', _args(alertmanager, state='expired'))['changed']
        alertmanager.wait_for(lambda: states()['worker1:9464'][0] == 'active', 'worker1 active again')


def test_cluster_created_on_one_member_seen_on_the_other():
    with AlertmanagerCluster(size=2) as cluster:
        first, second = cluster.members
        created = run_module('alertmanager_silence', _args(cluster))
        assert not created.failed, created
        assert created['cluster'] == dict(written_to=first.url, verified_on=[second.url], unreachable={})
        # The module only returned once the second member showed it.
        assert [s['id'] for s in live(second)] == [created['silence']['id']]
        # A rerun against the other member alone finds the same silence: no duplicate in the cluster.
        again = run_module('alertmanager_silence', _args(cluster, url=second.url))
        assert not again.failed and again['changed'] is False
        extended = run_module('alertmanager_silence', _args(cluster, url=[second.url, first.url], duration='1h'))
        assert extended['action'] == 'extended' and extended['cluster']['verified_on'] == [first.url]
        assert [s['endsAt'] for s in live(first)] == [s['endsAt'] for s in live(second)]

        # One member down: the other is enough, and the report says which one did not answer.
        first.stop()
        expired = run_module('alertmanager_silence', _args(cluster, state='expired'))
        assert not expired.failed, expired
        assert expired['cluster']['written_to'] == second.url
        assert list(expired['cluster']['unreachable']) == [first.url]
        assert live(second) == []


def test_info_filters(alertmanager):
    made = []
    for comment, matchers in (('info a', WORKER), ('info b', ['alertname="QueueStalled"', 'queue="bronze:ingest:csv"'])):
        result = run_module('alertmanager_silence', _args(alertmanager, comment=comment, matchers=matchers,
                                                          created_by='info-test'))
        made.append(result['silence']['id'])
    by_creator = run_module('alertmanager_silence_info', dict(url=alertmanager.url, created_by='info-test'))
    assert not by_creator.failed, by_creator
    assert sorted(s['id'] for s in by_creator['silences']) == sorted(made)
    assert by_creator['read_from'] == alertmanager.url
    by_matcher = run_module('alertmanager_silence_info', dict(url=alertmanager.url, matchers=['queue="bronze:ingest:csv"']))
    assert [s['comment'] for s in by_matcher['silences']] == ['info b']
    run_module('alertmanager_silence', _args(alertmanager, comment='info a', created_by='info-test', state='expired'))
    time.sleep(0.1)
    expired = run_module('alertmanager_silence_info', dict(url=alertmanager.url, created_by='info-test',
                                                           states=['expired']))
    assert [s['comment'] for s in expired['silences']] == ['info a']
