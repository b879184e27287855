"""Option values for every module, drawn from the module's own argument spec.

``load_spec(module)`` runs the module's ``main()`` with ``AnsibleModule`` replaced by a catcher that
records the ``argument_spec`` (and ``required_if``, ``mutually_exclusive`` ...) and stops, so the spec is
exactly what the module parses. ``documented_bounds`` reads the bounds an option's documentation states
("1 to 525600", "between 1 and 10000"). ``module_args`` turns both into a Hypothesis strategy:
plausible values for most options (the caller's hints, the defaults, the choices) and a few options
overridden with hostile values of their type - odd and huge strings, NUL bytes, unicode, empty values,
numbers at and past the documented bounds, huge and negative integers, NaN, unit-less and negative
intervals, glob corner cases, values of another type, invalid choices.
"""

import importlib
import math
import re

import yaml
from hypothesis import strategies as st

MODULE_PACKAGE = 'ansible_collections.cerniq.ops.plugins.modules.'
# Connection options: the fixtures give working values; hostile values for them come from
# CONNECTION_HOSTILE, one at a time and rarely, so most runs reach the server.
CONNECTION_OPTIONS = frozenset([
    'login_host', 'login_port', 'login_unix_socket', 'login_db', 'login_user', 'login_password', 'ssl_mode',
    'ssl_rootcert', 'ssl_cert', 'ssl_key', 'connect_timeout', 'application_name',
    'redis_host', 'redis_port', 'redis_db', 'redis_username', 'redis_password', 'redis_tls', 'redis_ca_certs',
    'redis_validate_certs', 'redis_client_cert', 'redis_client_key', 'redis_socket_timeout',
    'redis_sentinel_master', 'redis_sentinel_nodes', 'redis_cluster'])

_SPECS = {}


class _Caught(Exception):
    pass


def load_spec(module):
    """``dict(argument_spec=..., required_if=..., ...)`` exactly as ``module``'s main() builds it."""
    if module not in _SPECS:
        code = importlib.import_module(MODULE_PACKAGE + module)
        captured = {}

        def catcher(*args, **kwargs):
            captured.update(kwargs)
            if args:
                captured['argument_spec'] = args[0]
            raise _Caught()

        original = code.AnsibleModule
        code.AnsibleModule = catcher
        try:
            code.main()
        except _Caught:
            pass
        finally:
            code.AnsibleModule = original
        if 'argument_spec' not in captured:
            raise AssertionError('%s: main() did not build an AnsibleModule' % module)
        _SPECS[module] = captured
    return _SPECS[module]


def documentation(module):
    code = importlib.import_module(MODULE_PACKAGE + module)
    return yaml.safe_load(code.DOCUMENTATION)


_BOUNDS = re.compile(r'(?:between\s+)?(-?\d[\d,]*)\s+(?:to|and)\s+(-?\d[\d,]*)')


def documented_bounds(module):
    """``{option: (low, high)}`` for the options whose description states a range."""
    bounds = {}
    for name, option in (documentation(module).get('options') or {}).items():
        text = option.get('description') or ''
        text = ' '.join(text) if isinstance(text, list) else text
        match = _BOUNDS.search(text)
        if match:
            low, high = (int(part.replace(',', '')) for part in match.groups())
            if low < high:
                bounds[name] = (low, high)
    return bounds


ODD_TEXTS = [
    '', ' ', '\t', 'a\x00b', '\x00', '\n', 'line\nbreak', 'ț', 'Ștefan-Țară', '💥', '\u202eevil', 'ﬁ', 'x' * 5000,
    '%s', '%(x)s', '{}', '{0}', '{source}', '{source', "'", '"', '""', '"unterminated', "'; DROP TABLE users; --",
    '../../../etc/passwd', '/', '.', '..', 'a.b.c', 'public.', '.x', '-1', '0', '1e309', 'nan', 'None', 'null',
    'true', '*', '?', '?*', '*?', '**', '[', '[]', '[^\x00]*', '[a-', '\\', '\\*', 'a*b', '\r\n', 'ß' * 300,
]
INTERVAL_TEXTS = ['90', '0', '-90 days', '90 days ago', '-1', '1 second', '500ms', '30m', '90 days', '1s',
                  'infinity', '-infinity', 'P1D', '1 fortnight', '2999-01-01', 'epoch', '1e9 years', '00:00:01']
HUGE_INTS = [2 ** 31, 2 ** 31 - 1, 2 ** 53 + 1, 2 ** 63, 2 ** 63 - 1, -(2 ** 63), 2 ** 64, 10 ** 12, 99999999999,
             999999999999, -1, -2, 0]
ODD_FLOATS = [float('nan'), float('inf'), float('-inf'), -1.0, 0.0, -0.0, 1e-300, 1e308, 5e-324, 1.5]
WRONG_TYPES = [[], {}, [1, 2], {'a': 1}, 'not-a-number', '1.5', 1.5, True, None]


def odd_text():
    return st.one_of(st.sampled_from(ODD_TEXTS), st.sampled_from(INTERVAL_TEXTS),
                     st.text(min_size=0, max_size=40))


def _number_near_bounds(bounds, integer):
    if not bounds:
        return st.nothing()
    low, high = bounds
    values = [low - 1, low, high, high + 1]
    return st.sampled_from([v if integer else float(v) for v in values])


def hostile_value(spec, bounds=None):
    """A strategy of hostile values for an option of this spec."""
    kind = spec.get('type', 'str')
    options = []
    if spec.get('choices'):
        options.append(odd_text())
    if kind == 'int':
        options += [st.sampled_from(HUGE_INTS), st.integers(), _number_near_bounds(bounds, True)]
    elif kind == 'float':
        options += [st.sampled_from(ODD_FLOATS), st.floats(), _number_near_bounds(bounds, False),
                    st.sampled_from(HUGE_INTS)]
    elif kind == 'bool':
        options += [st.sampled_from(['yes', 'no', 'maybe', '', 2, 'on'])]
    elif kind == 'list':
        element = hostile_value(dict(type=spec.get('elements', 'str'))) if spec.get('elements') != 'dict' \
            else st.dictionaries(odd_text(), odd_text(), max_size=3)
        options += [st.lists(element, max_size=4), st.just([]), st.sampled_from(ODD_TEXTS)]
    elif kind == 'dict':
        options += [st.dictionaries(odd_text(), st.one_of(odd_text(), st.sampled_from(HUGE_INTS)), max_size=3)]
        if spec.get('options'):
            options.append(sub_options(spec['options'], hostile=True))
    else:  # str, path, raw
        options += [odd_text()]
        if kind == 'path':
            options.append(st.sampled_from(['/nonexistent/cerniq', '/', '/dev/null', '/proc/self/status', '']))
    # A value of another type (Ansible's own conversion refuses it) one time in eight.
    return st.sampled_from(range(8)).flatmap(lambda n: st.sampled_from(WRONG_TYPES) if n == 5 else st.one_of(*options))


def plausible_value(spec):
    """A strategy of ordinary values for an option (its choices, its default, small numbers); None = unset."""
    kind = spec.get('type', 'str')
    if spec.get('choices'):
        choices = list(spec['choices'])
        if kind == 'list':
            return st.lists(st.sampled_from(choices), min_size=1, max_size=len(choices), unique=True)
        return st.sampled_from(choices)
    if 'default' in spec:
        return st.just(spec['default'])
    if kind == 'bool':
        return st.booleans()
    if kind == 'int':
        return st.integers(1, 50)
    if kind == 'float':
        return st.floats(0.1, 10)
    return st.none()


def sub_options(options, hostile=False):
    return st.fixed_dictionaries({}, optional=dict(
        (name, hostile_value(spec) if hostile else plausible_value(spec)) for name, spec in options.items()))


@st.composite
def module_args(draw, module, hints=None, fixed=None, max_hostile=3, connection_hostile=None):
    """Arguments for ``module``: ``fixed`` (the connection), plausible values (``hints[option]`` strategies
    first), then up to ``max_hostile`` options overridden with hostile values, and rarely one connection
    option from ``connection_hostile`` (``{option: strategy}``)."""
    spec = load_spec(module)['argument_spec']
    bounds = documented_bounds(module)
    hints = hints or {}
    args = dict(fixed or {})
    for name, option in sorted(spec.items()):
        if name in CONNECTION_OPTIONS or name in args:
            continue
        strategy = hints.get(name, plausible_value(option))
        value = draw(strategy)
        if value is not None:
            args[name] = value
        elif option.get('required'):
            args[name] = draw(hostile_value(option, bounds.get(name)))
    candidates = sorted(name for name in spec if name not in CONNECTION_OPTIONS)
    # Few overrides at a time, so most runs get past the option checks to the server and its data.
    count = min(draw(st.sampled_from([1, 0, 0, 1, 0, 2, 0, 3])), max_hostile, len(candidates))
    for name in draw(st.lists(st.sampled_from(candidates), min_size=count, max_size=count, unique=True)):
        value = draw(st.one_of(hostile_value(spec[name], bounds.get(name)), st.just(_UNSET)))
        if value is _UNSET:
            args.pop(name, None)
        else:
            args[name] = value
    if connection_hostile and draw(st.sampled_from(range(20))) == 13:   # one run in twenty
        name = draw(st.sampled_from(sorted(connection_hostile)))
        args[name] = draw(connection_hostile[name])
    return args


_UNSET = object()


def is_finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and (math.isnan(value) or math.isinf(value)))
