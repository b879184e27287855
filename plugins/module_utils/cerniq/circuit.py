# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Circuit breakers and rate-limit counters kept in Redis by the workers of a BullMQ pipeline.

Plain Python (redis-py only). A source (``anaf``, ``termene``...) has a state key, a
failure-count key and a rate-limit key, named by templates with a ``{source}`` placeholder.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError

DEFAULT_TEMPLATES = dict(
    state_key='circuit:{source}:state',
    failures_key='circuit:{source}:failures',
    rate_limit_key='rate_limit:{source}:remaining',
)

# The options naming the breakers, shared by the circuit_breaker and circuit_breaker_info modules
# (documented once in the cerniq.ops.circuit_keys doc fragment).
CIRCUIT_ARGUMENT_SPEC = dict(
    sources=dict(type='list', elements='str', required=True),
    open_values=dict(type='list', elements='str', default=['OPEN']),
    state_key=dict(type='str', default=DEFAULT_TEMPLATES['state_key'], no_log=False),
    failures_key=dict(type='str', default=DEFAULT_TEMPLATES['failures_key'], no_log=False),
    rate_limit_key=dict(type='str', default=DEFAULT_TEMPLATES['rate_limit_key'], no_log=False),
)

# Delete the state key only if it still holds one of the OPEN values (ARGV), atomically.
_RESET_IF_OPEN = r'''
local value = redis.call("GET", KEYS[1])
if not value then return 0 end
if ARGV[1] == "1" then return redis.call("DEL", KEYS[1]) end
for i = 2, #ARGV do
  if string.lower(value) == string.lower(ARGV[i]) then return redis.call("DEL", KEYS[1]) end
end
return 0
'''


class CircuitError(EngineError):
    """A refusal with a one-line message."""


def _text(value):
    if value is None:
        return None
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)


def key_for(template, source):
    if '{source}' not in template:
        raise CircuitError('key template %r has no {source} placeholder' % template)
    if not source:
        raise CircuitError('source names must not be empty')
    return template.replace('{source}', source)


def checked_templates(templates):
    """The three key templates: the defaults, overridden by ``templates`` (None keeps a default).

    An empty template is refused (never silently replaced by the default), as is one without the
    ``{source}`` placeholder, and two kinds naming the same key (a reset would delete the other one).
    """
    chosen = dict(DEFAULT_TEMPLATES)
    for kind, template in sorted((templates or {}).items()):
        if kind not in DEFAULT_TEMPLATES:
            raise CircuitError('unknown key template %r' % (kind,))
        if template is None:
            continue
        if not template:
            raise CircuitError('%s must not be empty (leave it unset for the default %r)' % (
                kind, DEFAULT_TEMPLATES[kind]))
        key_for(template, 'x')
        chosen[kind] = template
    kinds = sorted(chosen)
    for at, kind in enumerate(kinds):
        for other in kinds[at + 1:]:
            if chosen[kind] == chosen[other]:
                raise CircuitError('%s and %s name the same key %r; each must name its own key' % (
                    kind, other, chosen[kind]))
    return chosen


def check_options(params):
    """The key templates of a module's options, checked with every source before connecting; CircuitError."""
    if not params.get('sources'):
        raise CircuitError('sources must name at least one source')
    templates = checked_templates(dict((kind, params.get(kind)) for kind in DEFAULT_TEMPLATES))
    for source in params['sources']:
        key_for(templates['state_key'], source)
    return templates


class CircuitBreakers(object):
    def __init__(self, client, templates=None, open_values=('OPEN',)):
        self.client = client
        self.templates = checked_templates(templates)
        self.open_values = [v.lower() for v in open_values]
        self._reset = client.register_script(_RESET_IF_OPEN)

    def keys(self, source):
        return dict((kind, key_for(template, source)) for kind, template in self.templates.items())

    def read(self, source):
        keys = self.keys(source)
        pipe = self.client.pipeline(transaction=False)
        for kind in ('state_key', 'failures_key', 'rate_limit_key'):
            pipe.type(keys[kind])
        types = [_text(t) for t in pipe.execute()]
        for kind, found in zip(('state_key', 'failures_key', 'rate_limit_key'), types):
            if found not in ('none', 'string'):
                raise CircuitError('refusing source %r: key %s has type %s, expected string' % (
                    source, keys[kind], found))
        pipe = self.client.pipeline(transaction=False)
        pipe.get(keys['state_key'])
        pipe.pttl(keys['state_key'])
        pipe.get(keys['failures_key'])
        pipe.get(keys['rate_limit_key'])
        pipe.pttl(keys['rate_limit_key'])
        state, state_ttl, failures, remaining, remaining_ttl = pipe.execute()
        state = _text(state)

        def number(value):
            """An integer count, or the stored text when it is none (for example 'inf')."""
            try:
                return int(float(_text(value))) if value is not None else None
            except (ValueError, OverflowError):
                return _text(value)

        return dict(
            source=source, keys=keys,
            state=state, open=state is not None and state.lower() in self.open_values,
            state_ttl_seconds=round(state_ttl / 1000.0, 3) if state_ttl and state_ttl > 0 else None,
            failures=number(failures),
            rate_limit_remaining=number(remaining),
            rate_limit_reset_seconds=round(remaining_ttl / 1000.0, 3) if remaining_ttl and remaining_ttl > 0
            else None,
        )

    def reset(self, source, force=False, check_mode=False):
        """Reset an OPEN breaker (DEL state and failures, as the runbook does); any state with ``force``."""
        before = self.read(source)
        wanted = before['state'] is not None and (before['open'] or force)
        wanted = wanted or (force and before['failures'] is not None)
        if not wanted:
            return False, before, before
        if check_mode:
            after = dict(before, state=None, open=False, state_ttl_seconds=None, failures=None)
            return True, before, after
        keys = before['keys']
        deleted = self._reset(keys=[keys['state_key']], args=['1' if force else '0'] + self.open_values)
        if deleted or force:
            self.client.delete(keys['failures_key'])
        after = self.read(source)
        return bool(deleted) or (force and before['failures'] is not None), before, after
