# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alertmanager silences, idempotently, through the v2 API (plain Python).

A silence is identified by its **matchers** (as a set), its **created_by** and its **comment**:
a second call with the same three finds the silence the first one made (active or pending) and
changes it only when its end differs, so a rerun never makes a duplicate. The API:

- ``GET /api/v2/silences`` lists every silence (``status.state``: active, pending, expired);
- ``POST /api/v2/silences`` creates one, or with ``id`` updates it - in place when the matchers
  and the start are unchanged, which is why an update sends the stored ``startsAt`` back;
- ``DELETE /api/v2/silence/<id>`` expires it (it stays listed as expired until retention).

Cluster: writes go to the first member that answers; every other member that answers is then
polled until it shows the same silence (gossip), so a caller knows the whole cluster agrees.
A member that does not answer is reported, not fatal: one member is enough for Alertmanager.

HTTP goes through a ``request(method, url, payload) -> (status, text)`` callable
(``http_request.module_request`` in modules; the maintenance runner brings a urllib one).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re
import time

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.http_request import error_line

SILENCES_PATH = '/api/v2/silences'
SILENCE_PATH = '/api/v2/silence/'
LIVE_STATES = ('active', 'pending')
# A stored end this close to the wanted one is the same end (latency and clock skew between the
# caller and Alertmanager, which moves a start in the past to its own "now").
END_TOLERANCE = datetime.timedelta(seconds=5)

_MATCHER_TEXT = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.DOTALL)
_TIME = re.compile(r'^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$')


class SilenceError(EngineError):
    """Bad input, or an answer of Alertmanager the engine cannot work with."""


# ---------------------------------------------------------------------------- matchers and times

def parse_matcher(item):
    """One matcher as the API wants it, from ``name="value"`` / ``name=~"regex"`` / ``!=`` / ``!~``
    text or from a dict ``{name, value, is_regex, is_equal}``."""
    if isinstance(item, dict):
        name, value = item.get('name'), item.get('value')
        if not isinstance(name, str) or not name or value is None:
            raise SilenceError('matcher %r: a dict needs a name and a value' % (item,))
        is_regex, is_equal = bool(item.get('is_regex', False)), bool(item.get('is_equal', True))
    else:
        match = _MATCHER_TEXT.match(str(item))
        if not match:
            raise SilenceError('matcher %r: expected name="value", name=~"regex", name!="value" or '
                               'name!~"regex"' % (item,))
        name, operator, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _unquote(value[1:-1])
        is_regex, is_equal = '~' in operator, not operator.startswith('!')
    value = str(value)
    if is_regex:
        try:
            re.compile(value)
        except re.error as error:
            raise SilenceError('matcher %s: invalid regular expression: %s' % (name, error))
    return {'name': name, 'value': value, 'isRegex': is_regex, 'isEqual': is_equal}


def _unquote(text):
    """A quoted label value as Alertmanager reads it: \\" \\\\ and \\n are escapes; any other
    backslash stays (so a regex such as cerniq\\-lab needs no doubling)."""
    return re.sub(r'\\(["\\n])', lambda m: '\n' if m.group(1) == 'n' else m.group(1), text)


def matcher_text(matcher):
    operator = ('=' if matcher.get('isEqual', True) else '!') + ('~' if matcher.get('isRegex') else '')
    if operator == '!':
        operator = '!='
    value = matcher['value'].replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    return '%s%s"%s"' % (matcher['name'], operator, value)


def _matcher_key(matcher):
    return (matcher['name'], matcher['value'], bool(matcher.get('isRegex')), bool(matcher.get('isEqual', True)))


def normalize_matchers(items):
    """Sorted, de-duplicated API matchers; refuses an empty list and a silence of (nearly) everything."""
    matchers = sorted({_matcher_key(m): m for m in (parse_matcher(i) for i in items or [])}.values(),
                      key=_matcher_key)
    if not matchers:
        raise SilenceError('a silence needs at least one matcher')
    if all(_matches_value(m, '') for m in matchers):
        raise SilenceError('refusing a blanket silence: every matcher (%s) also matches alerts without that label; '
                           'at least one must not match the empty string'
                           % ', '.join(matcher_text(m) for m in matchers))
    return matchers


def same_matchers(silence, matchers):
    return sorted(_matcher_key(m) for m in silence.get('matchers') or []) == [_matcher_key(m) for m in matchers]


def _matches_value(matcher, value):
    if matcher.get('isRegex'):
        found = re.fullmatch(matcher['value'], value) is not None
    else:
        found = matcher['value'] == value
    return found == bool(matcher.get('isEqual', True))


def silences_labels(silence, labels):
    """Whether the silence's matchers all match this label set (as Alertmanager decides)."""
    return all(_matches_value(m, labels.get(m['name'], '')) for m in silence.get('matchers') or [])


def parse_time(value):
    """A UTC datetime from ISO 8601 text (any fraction digits, Z or an offset) or a datetime."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    match = _TIME.match(str(value).strip())
    if not match:
        raise SilenceError('cannot read %r as a time (ISO 8601 expected, for example 2026-11-29T06:40:00Z)'
                           % (value,))
    day, clock, fraction, zone = match.groups()
    text = '%sT%s.%s%s' % (day, clock, (fraction or '0')[:6].ljust(6, '0'),
                           '+00:00' if zone in (None, 'Z') else zone[:3] + ':' + zone[-2:])
    try:
        return datetime.datetime.fromisoformat(text).astimezone(datetime.timezone.utc)
    except ValueError:
        raise SilenceError('cannot read %r as a time' % (value,))


def format_time(moment):
    """The API's form: UTC with milliseconds and Z."""
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (moment.microsecond // 1000)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def describe(silence):
    """A silence as the modules return it (snake_case keys, matchers as text)."""
    if not silence:
        return {}
    return {
        'id': silence.get('id'),
        'state': (silence.get('status') or {}).get('state'),
        'matchers': [matcher_text(m) for m in sorted(silence.get('matchers') or [], key=_matcher_key)],
        'starts_at': silence.get('startsAt'),
        'ends_at': silence.get('endsAt'),
        'created_by': silence.get('createdBy'),
        'comment': silence.get('comment'),
    }


# ---------------------------------------------------------------------------- the API

def _decode(status, text, what):
    if status < 200 or status >= 300:
        raise SilenceError('%s: HTTP %s: %s' % (what, status, text.strip()[:300]))
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise SilenceError('%s: the answer is not JSON: %s' % (what, text[:200]))


class Member(object):
    """One Alertmanager."""

    def __init__(self, url, request):
        self.url = url.rstrip('/')
        self.request = request

    def silences(self):
        answer = _decode(*self.request('GET', self.url + SILENCES_PATH), what='GET %s%s' % (self.url, SILENCES_PATH))
        if not isinstance(answer, list):
            raise SilenceError('GET %s%s: expected a list of silences' % (self.url, SILENCES_PATH))
        return answer

    def _send(self, method, path, body=None):
        what = '%s %s%s' % (method, self.url, path)
        try:
            status, text = self.request(method, self.url + path, body)
        except OSError as error:
            raise SilenceError('%s: %s' % (what, error_line(error)))
        return _decode(status, text, what)

    def post(self, body):
        answer = self._send('POST', SILENCES_PATH, body)
        if not isinstance(answer, dict) or not answer.get('silenceID'):
            raise SilenceError('POST %s%s: no silenceID in the answer' % (self.url, SILENCES_PATH))
        return answer['silenceID']

    def expire(self, silence_id):
        self._send('DELETE', SILENCE_PATH + silence_id)


class Cluster(object):
    """The members of one Alertmanager cluster (or a single Alertmanager)."""

    def __init__(self, urls, request, sleep=time.sleep, clock=time.monotonic):
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise SilenceError('no Alertmanager URL given')
        self.members = [Member(url, request) for url in urls]
        self.unreachable = {}
        self.primary = None
        self.sleep = sleep
        self.clock = clock

    def read(self):
        """Silences of the first member that answers (which then takes the writes)."""
        for member in self.members:
            if self.primary is not None and member is not self.primary:
                continue
            try:
                listing = member.silences()
            except OSError as error:
                self.unreachable[member.url] = error_line(error)
                continue
            self.primary = member
            return listing
        raise SilenceError('no Alertmanager answers: %s' % '; '.join(
            '%s: %s' % item for item in self.unreachable.items()))

    def wait_agreement(self, expected, timeout):
        """Poll every other member until each shows the silences of ``expected`` ({id: (state, ends_at)}).

        Returns the URLs that agree; a member that does not answer is recorded in ``unreachable``.
        """
        agreed = []
        deadline = self.clock() + timeout
        for member in self.members:
            if member is self.primary or member.url in self.unreachable or not expected:
                continue
            while True:
                try:
                    listing = {s.get('id'): s for s in member.silences()}
                except OSError as error:
                    self.unreachable[member.url] = error_line(error)
                    break
                if all(_agrees(listing.get(silence_id), state, ends_at)
                       for silence_id, (state, ends_at) in expected.items()):
                    agreed.append(member.url)
                    break
                if self.clock() >= deadline:
                    raise SilenceError('the change was made on %s but %s does not show it after %d s: the cluster '
                                       'does not gossip (check --cluster.peer)'
                                       % (self.primary.url, member.url, timeout))
                self.sleep(0.5)
        return agreed

    def report(self, agreed=()):
        return {'written_to': self.primary.url if self.primary else None, 'verified_on': list(agreed),
                'unreachable': dict(self.unreachable)}


def _agrees(silence, state, ends_at):
    if silence is None:
        return False
    seen = (silence.get('status') or {}).get('state')
    if state == 'expired':
        return seen == 'expired'
    return seen in LIVE_STATES and abs(parse_time(silence['endsAt']) - ends_at) <= datetime.timedelta(milliseconds=1)


# ---------------------------------------------------------------------------- idempotent changes

def find(listing, matchers, created_by, comment, states=LIVE_STATES):
    """Silences with exactly these matchers, this creator and this comment, in these states."""
    return [s for s in listing
            if (s.get('status') or {}).get('state') in states and s.get('createdBy') == created_by
            and s.get('comment') == comment and same_matchers(s, matchers)]


def wanted_end(duration_seconds=None, ends_at=None, start=None, now=None):
    """The end a silence should have: ``ends_at``, or ``duration`` after its start (now for a new one)."""
    now = now or utc_now()
    if ends_at is not None:
        end = parse_time(ends_at)
    else:
        if duration_seconds is None or duration_seconds <= 0:
            raise SilenceError('give a positive duration or ends_at')
        end = (start or now) + datetime.timedelta(seconds=duration_seconds)
    if end <= now:
        raise SilenceError('the silence would end at %s, which is not in the future' % format_time(end))
    return end


def ensure(cluster, matchers, created_by, comment, state='present', duration_seconds=None, ends_at=None,
           starts_at=None, check_mode=False, cluster_timeout=30, now=None):
    """Make the silence identified by (matchers, created_by, comment) exist until its end, or expire it.

    ``duration_seconds`` counts from the silence's start (an existing silence keeps its start), so a
    rerun changes nothing; ``ends_at`` is an absolute end. Returns ``dict(changed, action, silence,
    previous, expired_duplicates, cluster, diff)``; ``action`` is created, extended, shortened,
    replaced (a new start), expired or unchanged. In check mode only the GET is sent.
    """
    if not created_by or not comment:
        raise SilenceError('created_by and comment identify a silence: both are required')
    matchers = normalize_matchers(matchers)
    now = now or utc_now()
    listing = cluster.read()
    found = sorted(find(listing, matchers, created_by, comment), key=lambda s: s.get('endsAt') or '', reverse=True)
    keep, duplicates = (found[0], found[1:]) if found else (None, [])
    expected = {}
    result = dict(changed=False, action='unchanged', silence=describe(keep), previous=describe(keep),
                  expired_duplicates=[s['id'] for s in duplicates])

    if state == 'expired':
        for silence in found:
            if not check_mode:
                cluster.primary.expire(silence['id'])
            expected[silence['id']] = ('expired', None)
        if found:
            result.update(changed=True, action='expired', silence=dict(describe(keep), state='expired'),
                          expired_duplicates=[])
    else:
        start = parse_time(starts_at) if starts_at else None
        end = wanted_end(duration_seconds, ends_at, start or (parse_time(keep['startsAt']) if keep else None), now)
        body = dict(matchers=matchers, createdBy=created_by, comment=comment, endsAt=format_time(end))
        if keep is None:
            body['startsAt'] = format_time(start or now)
            result.update(changed=True, action='created')
        else:
            stored_end = parse_time(keep['endsAt'])
            moved_start = start is not None and abs(start - parse_time(keep['startsAt'])) > END_TOLERANCE
            if abs(stored_end - end) > END_TOLERANCE or moved_start:
                # A new start: Alertmanager expires the old silence and makes a new one (new id).
                body.update(id=keep['id'], startsAt=format_time(start) if moved_start else keep['startsAt'])
                result.update(changed=True, action='replaced' if moved_start else (
                    'extended' if end > stored_end else 'shortened'))
            else:
                end = stored_end
        if result['changed']:
            silence_id = None if check_mode else cluster.primary.post(body)
            after = dict(keep or {}, **body)
            after.update(id=silence_id or (keep or {}).get('id'),
                         status={'state': 'pending' if start and start > now else 'active'})
            if silence_id:
                # What Alertmanager stored (it moves a start in the past to its own clock).
                after = {s.get('id'): s for s in cluster.read()}.get(silence_id, after)
                expected[silence_id] = ((after.get('status') or {}).get('state'), end)
            result['silence'] = describe(after)
        for silence in duplicates:
            if not check_mode:
                cluster.primary.expire(silence['id'])
            expected[silence['id']] = ('expired', None)
            result['changed'] = True

    agreed = [] if check_mode else cluster.wait_agreement(expected, cluster_timeout)
    result['cluster'] = cluster.report(agreed)
    result['diff'] = dict(before=result['previous'], after=result['silence'] if state == 'present' else {})
    return result


def select(listing, states=LIVE_STATES, matchers=None, created_by=None, comment=None, labels=None):
    """Silences filtered for reports: in these states, holding every given matcher, by this creator,
    with this comment, silencing this label set. Newest end first."""
    wanted = [_matcher_key(parse_matcher(m)) for m in matchers or []]
    out = []
    for silence in listing:
        if states and (silence.get('status') or {}).get('state') not in states:
            continue
        if created_by is not None and silence.get('createdBy') != created_by:
            continue
        if comment is not None and silence.get('comment') != comment:
            continue
        own = {_matcher_key(m) for m in silence.get('matchers') or []}
        if any(key not in own for key in wanted):
            continue
        if labels is not None and not silences_labels(silence, labels):
            continue
        out.append(silence)
    out.sort(key=lambda s: s.get('endsAt') or '', reverse=True)
    return out


# ---------------------------------------------------------------------------- Ansible front ends

ALERTMANAGER_ARGUMENT_SPEC = dict(
    url=dict(type='list', elements='str', required=True),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='str', default='10s'),
    cluster_timeout=dict(type='str', default='30s'),
)


def module_cluster(module):
    """The Cluster of a module's ``url`` list, with its ``timeout``; the cluster timeout in seconds."""
    from ansible_collections.cerniq.ops.plugins.module_utils.durations import duration_option
    from ansible_collections.cerniq.ops.plugins.module_utils.http_request import module_request
    timeout = duration_option(module.params['timeout'], 'timeout', 0.001, 3600)
    cluster_timeout = duration_option(module.params['cluster_timeout'], 'cluster_timeout', 0, 3600)
    return Cluster(module.params['url'], module_request(module, timeout=timeout)), cluster_timeout
