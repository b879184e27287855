"""A stand-in for the AWX / Automation Controller REST API, for the objects-as-code test only.

AWX itself cannot run here (it needs its operator, a database and its images). This small server
keeps objects in memory the way the API's list/detail endpoints present them (``/api/v2/<kind>/``
with ``?name=`` filters, ``count``/``results``, ``id``, ``related``), stores survey specs and
credential associations, masks credential secrets as ``$encrypted$`` like AWX, and records every
write. It checks nothing AWX would check: the test validates the recorded objects itself (survey
rules, RRULEs, playbook names). Never used for anything but configure.yml.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from cerniq_testkit.http_recorder import LocalHttpServer

TEMPLATE_KINDS = ('job_templates', 'workflow_job_templates', 'projects', 'inventory_sources')
SUBRESOURCES = ('survey_spec', 'credentials', 'schedules', 'labels', 'instance_groups', 'notification_templates_started',
                'notification_templates_success', 'notification_templates_error')


class FakeController(LocalHttpServer):

    def __init__(self):
        self.objects = {'organizations': {1: {'id': 1, 'name': 'Default', 'type': 'organization'}}}
        self.surveys = {}
        self.associations = {}
        self.writes = []
        self._next_id = 100
        self._lock = threading.Lock()
        controller = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status, body):
                payload = json.dumps(body).encode() if status != 204 else b''
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('X-API-Product-Name', 'AWX')
                self.send_header('X-API-Product-Version', '24.6.1')
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self):
                length = int(self.headers.get('Content-Length') or 0)
                return json.loads(self.rfile.read(length).decode() or '{}') if length else {}

            def _route(self, method):
                url = urlsplit(self.path)
                parts = [p for p in url.path.split('/') if p]
                if parts[:2] != ['api', 'v2'] or self.headers.get('Authorization') != 'Bearer fake-controller-token':
                    return self._answer(401 if parts[:2] == ['api', 'v2'] else 404, {'detail': 'no'})
                with controller._lock:
                    status, body = controller.handle(method, parts[2:], dict(parse_qsl(url.query)),
                                                     self._body() if method in ('POST', 'PATCH', 'PUT') else None)
                return self._answer(status, body)

            def do_GET(self):  # noqa: N802 - http.server naming
                self._route('GET')

            def do_POST(self):  # noqa: N802
                self._route('POST')

            def do_PATCH(self):  # noqa: N802
                self._route('PATCH')

            def log_message(self, *args):
                pass

        super().__init__(Handler)

    # --- the API, as far as configure.yml uses it
    def handle(self, method, path, query, body):
        kind = path[0]
        if len(path) == 1:
            if method == 'GET':
                return 200, self._list(kind, query)
            if method == 'POST':
                return 201, self._present(kind, self._create(kind, body))
        obj_id = int(path[1])
        if kind == 'unified_job_templates':
            kind = next(k for k in TEMPLATE_KINDS if obj_id in self.objects.get(k, {}))
        obj = self.objects.get(kind, {}).get(obj_id)
        if obj is None:
            return 404, {'detail': 'Not found.'}
        if len(path) == 2:
            if method == 'PATCH':
                self.writes.append(('PATCH', kind, obj['name'], body))
                obj.update(body)
            return 200, self._present(kind, obj)
        return self._subresource(method, kind, obj, path[2], body, query)

    def _list(self, kind, query):
        if kind == 'unified_job_templates':
            candidates = [o for k in TEMPLATE_KINDS for o in self.objects.get(k, {}).values()]
        else:
            candidates = list(self.objects.get(kind, {}).values())
        query = dict((k, v) for k, v in query.items() if k not in ('page_size', 'page'))
        if 'or__id' in query or 'or__name' in query:
            wanted_id, wanted_name = query.pop('or__id', None), query.pop('or__name', None)
            candidates = [o for o in candidates if str(o['id']) == wanted_id or o.get('name') == wanted_name]
        for key, value in query.items():
            candidates = [o for o in candidates if key not in o or str(o[key]) == value]
        results = [self._present(kind, o) for o in candidates]
        return {'count': len(results), 'next': None, 'previous': None, 'results': results}

    def _create(self, kind, body):
        self._next_id += 1
        obj = dict(body, id=self._next_id, type=kind[:-1])
        self.objects.setdefault(kind, {})[obj['id']] = obj
        self.writes.append(('POST', kind, obj.get('name'), body))
        return obj

    def _present(self, kind, obj):
        shown = dict(obj)
        if kind == 'credentials':
            shown['inputs'] = dict((k, '$encrypted$') for k in obj.get('inputs', {}))
        if kind == 'projects':   # synced at once: no project update to wait for
            shown.setdefault('scm_revision', 'fake-revision')
        shown.setdefault('summary_fields', {})
        shown['url'] = '/api/v2/%s/%d/' % (kind, obj['id'])
        shown['related'] = dict((sub, '/api/v2/%s/%d/%s/' % (kind, obj['id'], sub)) for sub in SUBRESOURCES)
        return shown

    def _subresource(self, method, kind, obj, sub, body, query):
        key = (kind, obj['id'])
        if sub == 'survey_spec':
            if method == 'POST':
                self.writes.append(('POST', kind + '/survey_spec', obj['name'], body))
                self.surveys[key] = body
                return 200, {}
            return 200, self.surveys.get(key, {})
        if sub == 'schedules' and method == 'POST':
            return 201, self._present('schedules', self._create('schedules', dict(body, unified_job_template=obj['id'])))
        associated = self.associations.setdefault(key + (sub,), [])
        if method == 'POST':
            self.writes.append(('POST', '%s/%s' % (kind, sub), obj['name'], body))
            if body.get('disassociate'):
                associated.remove(body['id'])
            elif body['id'] not in associated:
                associated.append(body['id'])
            return 204, {}
        results = []
        for other_id in associated:
            for objects in self.objects.values():
                if other_id in objects:
                    results.append(objects[other_id])
        return 200, {'count': len(results), 'next': None, 'previous': None, 'results': results}
