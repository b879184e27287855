# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Upsert a SigNoz dashboard by title through the SigNoz HTTP API (plain Python).

The API (SigNoz query-service, dashboards v1):

- ``GET /api/v1/dashboards`` lists the dashboards: ``{"status": "success", "data": [{"uuid" (older
  releases) or "id": "<uuid>", "data": {"title": ..., "widgets": [...], ...}, ...}]}``;
- ``POST /api/v1/dashboards`` with the dashboard JSON as body creates one and answers it;
- ``PUT /api/v1/dashboards/<uuid>`` with the dashboard JSON replaces its data;
- ``DELETE /api/v1/dashboards/<uuid>`` removes it.

Every request carries the key in the ``SIGNOZ-API-KEY`` header only. The engine takes a
``request(method, url, payload) -> (status, body)`` callable: ``module_request(module)`` is the
Ansible front end (``open_url``); scripts pass their own. An HTTP error status is a return value, a
network failure an exception.

A stored dashboard equals the desired one when every key of the desired JSON has the same value in
the stored data (recursively; lists element by element). Keys SigNoz adds on its own (ids,
timestamps, defaults it fills in) are therefore not a difference, and a re-run sends nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError

import json
from urllib.error import HTTPError

API_KEY_HEADER = 'SIGNOZ-API-KEY'
DASHBOARDS_PATH = '/api/v1/dashboards'


class SignozError(EngineError):
    """An answer of the SigNoz API that the engine cannot work with."""


def _headers(api_key):
    return {API_KEY_HEADER: api_key, 'Content-Type': 'application/json', 'Accept': 'application/json'}


def module_request(module, api_key, timeout):
    """The ``request`` callable of an Ansible module (``open_url``; TLS from its params, ``timeout`` seconds)."""
    from ansible.module_utils.urls import open_url

    def request(method, url, payload=None):
        data = json.dumps(payload) if payload is not None else None
        try:
            response = open_url(url, data=data, method=method, headers=_headers(api_key),
                                validate_certs=module.params['validate_certs'], timeout=timeout,
                                follow_redirects='none')
            return response.getcode(), response.read().decode('utf-8', 'replace')
        except HTTPError as error:
            return error.code, error.read().decode('utf-8', 'replace')
    return request


def matches(desired, stored):
    """True when every key of ``desired`` has the same value in ``stored`` (recursively)."""
    if isinstance(desired, dict):
        if not isinstance(stored, dict):
            return False
        return all(key in stored and matches(value, stored[key]) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(stored, list) or len(desired) != len(stored):
            return False
        return all(matches(want, have) for want, have in zip(desired, stored))
    if isinstance(desired, bool) or isinstance(stored, bool):
        return desired is stored
    return desired == stored


def _decode(status, body, what):
    if status < 200 or status >= 300:
        raise SignozError('%s: HTTP %s: %s' % (what, status, body[:500]))
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        raise SignozError('%s: the answer is not JSON: %s' % (what, body[:200]))
    if isinstance(answer, dict) and answer.get('status') not in (None, 'success'):
        raise SignozError('%s: %s' % (what, answer.get('error') or answer))
    return answer


def _dashboard_id(item):
    return item.get('uuid') or item.get('id')


class SignozDashboards(object):
    """Dashboards of one SigNoz instance, found by title."""

    def __init__(self, base_url, request):
        self.base_url = base_url.rstrip('/')
        self.request = request

    def _url(self, suffix=''):
        return self.base_url + DASHBOARDS_PATH + suffix

    def list(self):
        answer = _decode(*self.request('GET', self._url()), what='GET %s' % DASHBOARDS_PATH)
        items = answer.get('data') if isinstance(answer, dict) else answer
        if not isinstance(items, list):
            raise SignozError('GET %s: expected a list of dashboards, got %r' % (DASHBOARDS_PATH, type(items).__name__))
        return [item for item in items if isinstance(item, dict)]

    def find(self, title):
        """The stored dashboard with this title, or None; an error when several carry it."""
        found = [item for item in self.list() if (item.get('data') or {}).get('title') == title]
        if len(found) > 1:
            raise SignozError('%d dashboards are titled %r (%s): refusing to guess which one to update'
                              % (len(found), title, ', '.join(str(_dashboard_id(item)) for item in found)))
        return found[0] if found else None

    def create(self, data):
        answer = _decode(*self.request('POST', self._url(), data), what='POST %s' % DASHBOARDS_PATH)
        created = answer.get('data') if isinstance(answer, dict) else None
        return _dashboard_id(created) if isinstance(created, dict) else None

    def update(self, dashboard_id, data):
        _decode(*self.request('PUT', self._url('/%s' % dashboard_id), data),
                what='PUT %s/%s' % (DASHBOARDS_PATH, dashboard_id))

    def delete(self, dashboard_id):
        _decode(*self.request('DELETE', self._url('/%s' % dashboard_id)),
                what='DELETE %s/%s' % (DASHBOARDS_PATH, dashboard_id))


def ensure(dashboards, data=None, title=None, state='present', check_mode=False):
    """Make the dashboard titled ``title`` (default ``data['title']``) match ``data``, or remove it.

    Returns ``dict(changed, action, id, diff)``; ``action`` is ``created``, ``updated``, ``deleted``
    or ``unchanged``. In check mode nothing is sent but the GET.
    """
    if state == 'present':
        if not isinstance(data, dict) or not data.get('title'):
            raise SignozError('the dashboard JSON must be an object with a title')
        title = title or data['title']
        if data['title'] != title:
            data = dict(data, title=title)
    elif not title:
        raise SignozError('state=absent needs a title')

    current = dashboards.find(title)
    before = current.get('data') if current else None
    current_id = _dashboard_id(current) if current else None

    if state == 'absent':
        if current is None:
            return dict(changed=False, action='unchanged', id=None, diff=dict(before={}, after={}))
        if not check_mode:
            dashboards.delete(current_id)
        return dict(changed=True, action='deleted', id=current_id, diff=dict(before=before, after={}))

    if current is not None and matches(data, before):
        return dict(changed=False, action='unchanged', id=current_id, diff=dict(before=before, after=before))
    if current is None:
        new_id = None if check_mode else dashboards.create(data)
        return dict(changed=True, action='created', id=new_id, diff=dict(before={}, after=data))
    if not check_mode:
        dashboards.update(current_id, data)
    return dict(changed=True, action='updated', id=current_id, diff=dict(before=before, after=data))
