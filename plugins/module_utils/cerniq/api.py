# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calls to the CERNIQ HTTP API (HITL, scoring) for engines that take a ``post`` callable.

``module_post(module)`` is the Ansible front end (``open_url``, bearer token from the module's
no_log ``api_token``); scripts pass their own callable. It returns
``post(url, payload) -> (status, body)``: an HTTP error status is a return value, a network
failure an exception. The token is sent in a header only, never on a command line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from urllib.error import HTTPError

from ansible_collections.cerniq.ops.plugins.module_utils.durations import duration_option

API_ARGUMENT_SPEC = dict(
    api_url=dict(type='str'),
    api_token=dict(type='str', no_log=True),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='str', default='30s'),
)


def api_argument_spec():
    from ansible.module_utils.basic import env_fallback
    spec = dict((key, dict(value)) for key, value in API_ARGUMENT_SPEC.items())
    spec['api_token']['fallback'] = (env_fallback, ['CERNIQ_API_TOKEN'])
    return spec


def api_timeout(params):
    """Seconds of the ``timeout`` option (a duration with a unit, 1s to 1h); DurationError otherwise."""
    return duration_option(params.get('timeout'), 'timeout', 1, 3600)


def _headers(token):
    return {'Authorization': 'Bearer %s' % token, 'Content-Type': 'application/json', 'Accept': 'application/json'}


def module_post(module):
    from ansible.module_utils.urls import open_url

    def post(url, payload):
        try:
            response = open_url(url, data=json.dumps(payload), method='POST', headers=_headers(module.params['api_token']),
                                validate_certs=module.params['validate_certs'], timeout=api_timeout(module.params),
                                follow_redirects='none')
            return response.getcode(), response.read().decode('utf-8', 'replace')
        except HTTPError as error:
            return error.code, error.read().decode('utf-8', 'replace')
    return post


def rejected_message(api, status, body):
    """One line for an HTTP error answer: ``<api> answered HTTP <status>: <first 200 characters of the body>``."""
    return '%s answered HTTP %s: %s' % (api, status, ' '.join((body or '').split())[:200])


def request_failed_message(error):
    """One line for a request that got no answer (refused, timed out, bad TLS)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return 'request failed: %s' % (lines[0] if lines else error.__class__.__name__)
