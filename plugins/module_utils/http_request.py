# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``request(method, url, payload=None) -> (status, text)`` callable the HTTP engines take
(Prometheus rules, Alertmanager silences).

``module_request`` is the Ansible front end (``open_url``: proxies, certificates, the module's
``validate_certs`` and ``timeout``); code that runs without Ansible (the maintenance runner)
passes its own standard-library one. A payload is sent as JSON. An HTTP error status is a
return value; a network failure raises ``OSError`` (``URLError`` is one).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from urllib.error import HTTPError

JSON_HEADERS = {'Content-Type': 'application/json', 'Accept': 'application/json'}


def _body(payload):
    return json.dumps(payload).encode('utf-8') if payload is not None else None


def module_request(module, timeout=None):
    """``request`` built on Ansible's ``open_url`` with the module's ``validate_certs`` and ``timeout``."""
    from ansible.module_utils.urls import open_url

    def request(method, url, payload=None):
        try:
            response = open_url(url, data=_body(payload), method=method, headers=JSON_HEADERS,
                                validate_certs=module.params.get('validate_certs', True),
                                timeout=10 if timeout is None else timeout, follow_redirects='none')
            return response.getcode(), response.read().decode('utf-8', 'replace')
        except HTTPError as error:
            return error.code, error.read().decode('utf-8', 'replace')
    return request


def error_line(error):
    """The first line of an exception's text (for one-line failure messages)."""
    text = str(getattr(error, 'reason', None) or error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__
