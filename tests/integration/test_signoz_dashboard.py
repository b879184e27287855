"""cerniq.ops.signoz_dashboard and the dashboards role against a stand-in SigNoz API.

SigNoz itself cannot run here. ``FakeSignoz`` is a small local HTTP server (127.0.0.1, free port,
in a thread) implementing the four calls the module uses — ``GET /api/v1/dashboards``,
``POST /api/v1/dashboards``, ``PUT /api/v1/dashboards/<uuid>``, ``DELETE /api/v1/dashboards/<uuid>`` —
with the documented shapes: the ``SIGNOZ-API-KEY`` header is required (401 otherwise), the list
answers ``{"status": "success", "data": [{"uuid", "data": {...}}]}``, a created or updated
dashboard must be a JSON object with a ``title``, ``layout`` and ``widgets``. It keeps state and,
like SigNoz, adds keys of its own to what it stores, so create, update, no-change (only a GET is
sent), check mode, diff and delete are all exercised against a server that remembers.
"""

import copy
import json
import os
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cerniq_testkit.ansible_run import run_module, run_playbook
from cerniq_testkit.rendered import default_dashboards_dir

API_KEY = 'test-signoz-key-5f2a'
ITEM_PATH = re.compile(r'^/api/v1/dashboards/([0-9a-f-]{36})$')


class FakeSignoz:

    def __init__(self):
        self.dashboards = {}      # uuid -> stored record
        self.requests = []        # (method, path, headers, body)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status, payload):
                raw = json.dumps(payload).encode('utf-8')
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method):
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length) if length else b''
                body = json.loads(raw.decode('utf-8')) if raw else None
                with fake._lock:
                    fake.requests.append((method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status, payload = fake.route(method, self.path, self.headers, body)
                self._answer(status, payload)

            def do_GET(self):  # noqa: N802
                self._handle('GET')

            def do_POST(self):  # noqa: N802
                self._handle('POST')

            def do_PUT(self):  # noqa: N802
                self._handle('PUT')

            def do_DELETE(self):  # noqa: N802
                self._handle('DELETE')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def _valid(body):
        return (isinstance(body, dict) and isinstance(body.get('title'), str) and body['title']
                and isinstance(body.get('layout'), list) and isinstance(body.get('widgets'), list))

    @staticmethod
    def _stored(body):
        """What SigNoz keeps: the posted data plus keys it fills in itself."""
        data = copy.deepcopy(body)
        data.setdefault('uploadedGrafana', False)
        for widget in data['widgets']:
            widget.setdefault('selectedLogFields', None)
        return data

    def route(self, method, path, headers, body):
        if {k.lower(): v for k, v in headers.items()}.get('signoz-api-key') != API_KEY:
            return 401, {'status': 'error', 'error': 'unauthorized'}
        if path == '/api/v1/dashboards' and method == 'GET':
            return 200, {'status': 'success', 'data': list(self.dashboards.values())}
        if path == '/api/v1/dashboards' and method == 'POST':
            if not self._valid(body):
                return 400, {'status': 'error', 'error': 'invalid dashboard'}
            new_id = str(uuid.uuid4())
            self.dashboards[new_id] = dict(id=len(self.dashboards) + 1, uuid=new_id, data=self._stored(body),
                                           created_by='test', isLocked=0)
            return 200, {'status': 'success', 'data': self.dashboards[new_id]}
        match = ITEM_PATH.match(path)
        if match and match.group(1) in self.dashboards:
            if method == 'PUT':
                if not self._valid(body):
                    return 400, {'status': 'error', 'error': 'invalid dashboard'}
                self.dashboards[match.group(1)]['data'] = self._stored(body)
                return 200, {'status': 'success', 'data': self.dashboards[match.group(1)]}
            if method == 'DELETE':
                del self.dashboards[match.group(1)]
                return 200, {'status': 'success', 'data': None}
        return 404, {'status': 'error', 'error': 'not found'}

    def methods(self):
        return [method for method, _unused, _unused, _unused in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def signoz():
    with FakeSignoz() as fake:
        yield fake


@pytest.fixture
def dashboard():
    with open(os.path.join(default_dashboards_dir(), 'etapa1-overview.signoz.json')) as handle:
        return json.load(handle)


def args(signoz, **extra):
    return dict(url=signoz.url, api_key=API_KEY, **extra)


def test_create_then_no_change_then_update(signoz, dashboard):
    created = run_module('signoz_dashboard', args(signoz, dashboard=dashboard))
    assert not created.failed, created
    assert created['changed'] is True
    assert created['action'] == 'created'
    assert signoz.methods() == ['GET', 'POST']
    method, path, headers, body = signoz.requests[1]
    assert (method, path) == ('POST', '/api/v1/dashboards')
    assert headers['signoz-api-key'] == API_KEY
    assert headers['content-type'] == 'application/json'
    assert body == dashboard
    assert created['id'] in signoz.dashboards

    # The server added keys of its own: still no change, and nothing but the GET is sent.
    del signoz.requests[:]
    again = run_module('signoz_dashboard', args(signoz, dashboard=dashboard))
    assert not again.failed, again
    assert again['changed'] is False
    assert again['action'] == 'unchanged'
    assert again['id'] == created['id']
    assert signoz.methods() == ['GET']

    # One threshold changed: PUT to the same uuid with the whole new dashboard.
    changed = copy.deepcopy(dashboard)
    hitl = next(w for w in changed['widgets'] if w['title'] == 'HITL Pending Tasks')
    hitl['thresholds'][0]['thresholdValue'] = 40
    del signoz.requests[:]
    updated = run_module('signoz_dashboard', args(signoz, dashboard=changed), diff=True)
    assert not updated.failed, updated
    assert (updated['changed'], updated['action'], updated['id']) == (True, 'updated', created['id'])
    assert signoz.methods() == ['GET', 'PUT']
    assert signoz.requests[1][1] == '/api/v1/dashboards/%s' % created['id']
    assert signoz.requests[1][3] == changed
    assert len(signoz.dashboards) == 1
    stored = signoz.dashboards[created['id']]['data']
    assert next(w for w in stored['widgets'] if w['title'] == 'HITL Pending Tasks')['thresholds'][0]['thresholdValue'] == 40
    assert updated['diff']['after'] == changed
    assert updated['diff']['before']['title'] == dashboard['title']


def test_check_mode_sends_only_the_get(signoz, dashboard):
    would_create = run_module('signoz_dashboard', args(signoz, dashboard=dashboard), check_mode=True, diff=True)
    assert not would_create.failed, would_create
    assert (would_create['changed'], would_create['action']) == (True, 'created')
    assert would_create['diff']['after'] == dashboard
    assert signoz.methods() == ['GET']
    assert signoz.dashboards == {}

    run_module('signoz_dashboard', args(signoz, dashboard=dashboard))
    changed = dict(dashboard, description='changed')
    del signoz.requests[:]
    would_update = run_module('signoz_dashboard', args(signoz, dashboard=changed), check_mode=True)
    assert (would_update['changed'], would_update['action']) == (True, 'updated')
    assert signoz.methods() == ['GET']
    assert next(iter(signoz.dashboards.values()))['data']['description'] == dashboard['description']


def test_absent_deletes_by_title(signoz, dashboard):
    run_module('signoz_dashboard', args(signoz, dashboard=dashboard))
    other = dict(dashboard, title='Another dashboard')
    run_module('signoz_dashboard', args(signoz, dashboard=other))
    assert len(signoz.dashboards) == 2

    del signoz.requests[:]
    gone = run_module('signoz_dashboard', args(signoz, title=dashboard['title'], state='absent'))
    assert not gone.failed, gone
    assert (gone['changed'], gone['action']) == (True, 'deleted')
    assert signoz.methods() == ['GET', 'DELETE']
    assert [d['data']['title'] for d in signoz.dashboards.values()] == ['Another dashboard']

    still_gone = run_module('signoz_dashboard', args(signoz, title=dashboard['title'], state='absent'))
    assert (still_gone['changed'], still_gone['action']) == (False, 'unchanged')


def test_duplicate_titles_are_refused(signoz, dashboard):
    run_module('signoz_dashboard', args(signoz, dashboard=dashboard))
    # A second copy created behind the module's back (for example by a UI import).
    signoz.route('POST', '/api/v1/dashboards', {'SIGNOZ-API-KEY': API_KEY}, dashboard)
    result = run_module('signoz_dashboard', args(signoz, dashboard=dict(dashboard, description='x')))
    assert result.failed
    assert 'refusing to guess' in result['msg']
    assert all(d['data']['description'] == dashboard['description'] for d in signoz.dashboards.values())


def test_wrong_key_fails_without_leaking_it(signoz, dashboard):
    wrong = 'wrong-key-should-not-appear'
    result = run_module('signoz_dashboard', dict(url=signoz.url, api_key=wrong, dashboard=dashboard))
    assert result.failed
    assert 'HTTP 401' in result['msg']
    assert wrong not in json.dumps(dict(result))
    assert signoz.dashboards == {}


def test_timeout_is_a_duration(signoz, dashboard):
    for value, words in ((30, "'30' is not a duration with a unit"), ('2h', 'timeout must be between 1s and 1h')):
        result = run_module('signoz_dashboard', dict(url=signoz.url, api_key=API_KEY, dashboard=dashboard,
                                                     timeout=value))
        assert result.failed and words in result['msg'], result
    assert signoz.dashboards == {}
    assert not run_module('signoz_dashboard', dict(url=signoz.url, api_key=API_KEY, dashboard=dashboard,
                                                   timeout='5s')).failed


def test_api_key_from_environment(signoz, dashboard):
    result = run_module('signoz_dashboard', dict(url=signoz.url, dashboard=dashboard),
                        env={'SIGNOZ_API_KEY': API_KEY})
    assert not result.failed, result
    assert result['action'] == 'created'


def test_dashboards_role_uploads_and_provisions(signoz, tmp_path):
    """The role end to end on localhost: SigNoz upsert (idempotent) and the Grafana files."""
    playbook = tmp_path / 'dashboards.yml'
    playbook.write_text(
        '- hosts: localhost\n'
        '  gather_facts: false\n'
        '  roles:\n'
        '    - role: cerniq.ops.dashboards\n'
    )
    extra = dict(
        dashboards_signoz_enabled=True,
        dashboards_signoz_url=signoz.url,
        dashboards_signoz_api_key=API_KEY,
        dashboards_grafana_enabled=True,
        dashboards_grafana_provisioning_dir=str(tmp_path / 'provisioning'),
        dashboards_grafana_dashboards_dir=str(tmp_path / 'dashboards'),
        dashboards_grafana_owner=os.getenv('USER', 'root'),
        dashboards_grafana_group='root',
        dashboards_grafana_service='',
    )
    first = run_playbook(str(playbook), extra_vars=extra)
    assert first.returncode == 0, first.stdout
    assert API_KEY not in first.stdout
    assert [d['data']['title'] for d in signoz.dashboards.values()] == ['Etapa 1 - Data Pipeline Overview']
    provider = (tmp_path / 'provisioning' / 'cerniq.yml').read_text()
    assert 'path: "%s"' % (tmp_path / 'dashboards') in provider
    grafana = json.loads((tmp_path / 'dashboards' / 'etapa1-overview.grafana.json').read_text())
    assert grafana['title'] == 'Etapa 1 - Data Pipeline Overview'

    second = run_playbook(str(playbook), extra_vars=extra)
    assert second.returncode == 0, second.stdout
    assert re.search(r'localhost\s*:\s*ok=\d+\s+changed=0\b', second.stdout), second.stdout
    assert [m for m in signoz.methods() if m != 'GET'] == ['POST']
