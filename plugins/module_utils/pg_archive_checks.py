# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``pg_archive`` refuses before it connects: option types and bounds, durations, ``where``.

Plain Python, no server needed. ``check_options`` validates every option of a run and returns
them normalized (durations turned into PostgreSQL interval text and milliseconds); the module
calls it before connecting and the engine calls it again, so the scheduled job and the
benchmark get the same refusals. Refusals raise ``ValueError`` with a one-line message.

Durations follow the collection's option vocabulary (``durations.py``): a number with a unit,
several terms allowed (``90 days``, ``1h 30m``, ``500ms``); ``older_than`` also takes calendar
months and years (``3 months``). A bare number is refused (PostgreSQL reads ``interval '90'`` as
90 seconds), and so are signs and ``ago`` (``-90 days`` and ``90 days ago`` are intervals into
the future).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from ansible_collections.cerniq.ops.plugins.module_utils.durations import (
    UNIT_SECONDS,
    DurationError,
    duration_option,
    duration_terms,
    parse_duration,
)
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import split_qualified_name

# PostgreSQL's unit for each size of the collection's duration units, and the calendar units older_than
# also takes (PostgreSQL's own month and year arithmetic).
_PG_UNIT = {0.001: 'milliseconds', 1: 'seconds', 60: 'minutes', 3600: 'hours', 86400: 'days', 604800: 'weeks'}
_CALENDAR = dict([(unit, 'months') for unit in ('mon', 'mons', 'month', 'months')]
                 + [(unit, 'years') for unit in ('y', 'yr', 'yrs', 'year', 'years')])
MAX_TIMEOUT_MS = 2147483647      # PostgreSQL's limit for lock_timeout / statement_timeout
MAX_BATCH = 10000000
MAX_TIME_BUDGET = 10 * 365 * 86400.0


def _refuse_bare_number(value, name, postgres_unit, example):
    text = str(value).strip()
    if isinstance(value, bool) or not text:
        raise ValueError('%s must be a duration such as "%s", got %r' % (name, example, value))
    if re.match(r'^[0-9.]+$', text):
        raise ValueError('%s: %r has no unit (PostgreSQL would read it as %s); write it with a unit, e.g. "%s"'
                         % (name, text, postgres_unit, example))


def interval_text(value, name):
    """``older_than`` as PostgreSQL interval text ('90 days', '1 months 15 days'), more than zero.

    The collection's duration units, and calendar months and years; no sign, no "ago".
    """
    _refuse_bare_number(value, name, 'seconds', '90 days')
    units = dict(UNIT_SECONDS)
    units.update(_CALENDAR)
    try:
        terms = duration_terms(value, name, units)
    except DurationError as error:
        raise ValueError('%s; months and years are also allowed, no sign, no "ago"' % error)
    if not any(number > 0 for number, _unit in terms):
        raise ValueError('%s must be more than zero, got %r' % (name, value))
    return ' '.join('%s %s' % (('%f' % number).rstrip('0').rstrip('.'), _CALENDAR.get(unit) or _PG_UNIT[UNIT_SECONDS[unit]])
                    for number, unit in terms)


def timeout_ms(value, name):
    """A session timeout (``'1s'``, ``'500ms'``) in whole milliseconds, 1 ms .. PostgreSQL's maximum."""
    _refuse_bare_number(value, name, 'milliseconds', '500ms')
    try:
        ms = int(math.ceil(parse_duration(value, name) * 1000.0))
    except DurationError as error:
        raise ValueError(str(error))
    if ms < 1 or ms > MAX_TIMEOUT_MS:
        raise ValueError('%s must be between 1ms and %dms, got %r' % (name, MAX_TIMEOUT_MS, value))
    return ms


def _int(options, name, low, high, required=True):
    value = options.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool):
        raise ValueError('%s must be an integer, got %r' % (name, value))
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError('%s must be an integer, got %r' % (name, value))
    if number < low or number > high:
        raise ValueError('%s must be between %d and %d, got %d' % (name, low, high, number))
    return number


def _duration(options, name, low, high, optional=False):
    """Seconds of a duration option with a unit, ``low`` to ``high`` seconds (None when optional and unset)."""
    try:
        return duration_option(options.get(name), name, low, high, optional=optional)
    except DurationError as error:
        raise ValueError(str(error))


def _relation(options, name, required=True):
    value = options.get(name)
    if value is None or value == '':
        if required:
            raise ValueError('%s is required' % name)
        return None
    if not isinstance(value, str):
        raise ValueError('%s must be a table name, got %r' % (name, value))
    try:
        split_qualified_name(value)
        if '\x00' in value:
            raise ValueError('NUL byte in %r' % value)
    except ValueError as error:
        raise ValueError('%s: %s' % (name, error))
    return value


def _choice(options, name, choices):
    value = options.get(name)
    if value not in choices:
        raise ValueError('%s must be one of %s, got %r' % (name, ', '.join(choices), value))
    return value


def _bool(options, name):
    value = options.get(name)
    if not isinstance(value, bool):
        raise ValueError('%s must be true or false, got %r' % (name, value))
    return value


def check_options(options):
    """Validate and normalize a run's options (the engine's defaults filled in); raises ValueError."""
    out = dict(options)
    out['source_table'] = _relation(options, 'source_table')
    out['archive_table'] = _relation(options, 'archive_table', required=False)
    column = options.get('timestamp_column')
    if not isinstance(column, str) or not column or '\x00' in column:
        raise ValueError('timestamp_column must be a column name, got %r' % (column,))
    older_than, cutoff = options.get('older_than'), options.get('cutoff')
    if (older_than is None) == (cutoff is None):
        raise ValueError('give exactly one of older_than (a duration such as "90 days") or cutoff (a timestamp)')
    if older_than is not None:
        out['older_than'] = interval_text(older_than, 'older_than')
    elif not isinstance(cutoff, str) or not cutoff.strip() or '\x00' in cutoff:
        raise ValueError('cutoff must be a timestamp such as "2026-01-01T00:00:00+00:00", got %r' % (cutoff,))
    out['where'] = check_where(options.get('where'))
    out['min_batch_size'] = _int(options, 'min_batch_size', 1, MAX_BATCH)
    out['max_batch_size'] = _int(options, 'max_batch_size', 1, MAX_BATCH)
    if out['min_batch_size'] > out['max_batch_size']:
        raise ValueError('min_batch_size (%d) must not be above max_batch_size (%d)' % (
            out['min_batch_size'], out['max_batch_size']))
    out['batch_size'] = min(max(_int(options, 'batch_size', 1, MAX_BATCH), out['min_batch_size']),
                            out['max_batch_size'])
    out['target_batch_ms'] = int(round(_duration(options, 'target_batch_time', 0.001, 600) * 1000))
    out['time_budget'] = _duration(options, 'time_budget', 1, MAX_TIME_BUDGET, optional=True)
    out['lock_timeout_ms'] = timeout_ms(options.get('lock_timeout'), 'lock_timeout')
    out['statement_timeout_ms'] = timeout_ms(options.get('statement_timeout'), 'statement_timeout')
    out['lock_retries'] = _int(options, 'lock_retries', 0, 100)
    out['partition_mode'] = _choice(options, 'partition_mode', ('detach', 'batch'))
    out['strategy'] = _choice(options, 'strategy', ('auto', 'block', 'index'))
    for name in ('create_archive', 'allow_delete_side_effects'):
        out[name] = _bool(options, name)
    return out


# --------------------------------------------------------------------------- where

_IDENT_START = re.compile(r'[A-Za-z_\u0080-\U0010ffff]')
_IDENT_REST = re.compile(r'[A-Za-z0-9_$\u0080-\U0010ffff]*')
_DOLLAR_DELIM = re.compile(r'\$([A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$')
_NUMBER = re.compile(r'[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?')
# PostgreSQL's "quote continue": whitespace holding a newline (and -- comments), then a quote,
# continues the string in the same mode ('a'\n'b' is 'ab').
_QUOTE_CONTINUE = re.compile(r"[ \t\f]*(?:--[^\n\r]*)?[\n\r](?:[ \t\n\r\f\v]+|--[^\n\r]*[\n\r])*'")
_CLOSE = {'(': ')', '[': ']'}


def _refuse(reason):
    raise ValueError('where %s' % reason)


def _string_end(where, pos, backslash):
    """Index after the string whose opening quote is at ``pos`` (continuations included)."""
    i = pos + 1
    while True:
        if i >= len(where):
            _refuse('has an unterminated quoted string')
        ch = where[i]
        if backslash and ch == '\\':
            i += 2
        elif ch == "'":
            if where.startswith("''", i):
                i += 2
                continue
            cont = _QUOTE_CONTINUE.match(where, i + 1)
            if not cont:
                return i + 1
            i = cont.end()
        else:
            i += 1


def _comment_end(where, pos):
    """Index after the (nestable) block comment starting at ``pos``."""
    depth, i = 0, pos
    while i < len(where):
        if where.startswith('/*', i):
            depth += 1
            i += 2
        elif where.startswith('*/', i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    _refuse('has an unterminated /* comment')


def check_where(where):
    """Accept one balanced SQL expression; refuse anything that could reach outside its parentheses.

    Tokenizes like PostgreSQL's lexer (standard_conforming_strings on, which the engine sets for its
    session): '' strings (with E'' backslash escapes and newline continuations), "" identifiers,
    $tag$ dollar quotes, -- and nested /* */ comments. Outside those, parentheses and brackets must
    balance and never close more than they opened, and no ``;`` may appear. The engine always puts
    the expression inside ``(`` and ``)`` on lines of their own.
    """
    if where is None:
        return None
    if not isinstance(where, str) or not where.strip():
        _refuse('must be a non-empty SQL boolean expression')
    if '\x00' in where:
        _refuse('must not contain a NUL byte')
    stack, i = [], 0
    while i < len(where):
        ch = where[i]
        if where.startswith('--', i):
            ends = [p for p in (where.find('\n', i), where.find('\r', i)) if p >= 0]
            i = min(ends) if ends else len(where)
        elif where.startswith('/*', i):
            i = _comment_end(where, i)
        elif ch == "'":
            i = _string_end(where, i, backslash=False)
        elif ch == '"':
            end = i + 1
            while True:
                end = where.find('"', end)
                if end < 0:
                    _refuse('has an unterminated quoted identifier')
                if not where.startswith('""', end):
                    break
                end += 2
            i = end + 1
        elif ch == '$':
            delim = _DOLLAR_DELIM.match(where, i)
            if delim:
                end = where.find(delim.group(0), delim.end())
                if end < 0:
                    _refuse('has an unterminated dollar-quoted string %s' % delim.group(0))
                i = end + len(delim.group(0))
            else:
                i = re.compile(r'\$[0-9]*').match(where, i).end()
        elif _IDENT_START.match(ch):
            end = _IDENT_REST.match(where, i + 1).end()
            if end == i + 1 and ch in 'eE' and where.startswith("'", end):
                i = _string_end(where, end, backslash=True)
            else:
                i = end
        elif ch.isdigit() or (ch == '.' and where[i + 1:i + 2].isdigit()):
            i = _NUMBER.match(where, i).end()
        elif ch in '([':
            stack.append(ch)
            i += 1
        elif ch in ')]':
            if not stack or _CLOSE[stack.pop()] != ch:
                _refuse('is not one balanced expression: %r closes what it did not open' % ch)
            i += 1
        elif ch == ';':
            _refuse('must be one SQL expression (a ";" outside quotes is refused)')
        else:
            i += 1
    if stack:
        _refuse('is not one balanced expression: %d unclosed %r' % (len(stack), stack[-1]))
    return where
