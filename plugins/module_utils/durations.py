# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations written with units ('500ms', '30s', '2h', '1h30m', '90 days'), as the collection's
options take them. A number without a unit is refused: '30' could mean seconds or minutes.

Plain Python (no Ansible imports), so scripts and the maintenance runner use it too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

UNIT_SECONDS = {
    'ms': 0.001, 'millisecond': 0.001, 'milliseconds': 0.001,
    's': 1, 'sec': 1, 'second': 1, 'seconds': 1,
    'm': 60, 'min': 60, 'minute': 60, 'minutes': 60,
    'h': 3600, 'hour': 3600, 'hours': 3600,
    'd': 86400, 'day': 86400, 'days': 86400,
    'w': 604800, 'week': 604800, 'weeks': 604800,
}

_PART = re.compile(r'\s*(\d+(?:\.\d+)?)\s*([a-z]+)', re.IGNORECASE)


class DurationError(ValueError):
    """A duration that cannot be read."""


def duration_terms(value, name='duration', units=None):
    """The ``(number, unit)`` terms of a duration such as '1h30m' (units lower-cased, from ``units``,
    UNIT_SECONDS by default); DurationError when there is none or anything else is left."""
    units = UNIT_SECONDS if units is None else units
    text = str(value).strip() if value is not None else ''
    terms = []
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if not match or match.group(2).lower() not in units:
            break
        terms.append((float(match.group(1)), match.group(2).lower()))
        position = match.end()
    if not terms or text[position:].strip():
        raise DurationError("%s: %r is not a duration with a unit (for example '30s', '15m', '2h', '1h30m', "
                            "'7 days')" % (name, value))
    return terms


def parse_duration(value, name='duration'):
    """Seconds (float) of a duration such as '2h', '1h30m', '500ms' or '90 days'."""
    return sum(number * UNIT_SECONDS[unit] for number, unit in duration_terms(value, name))


def duration_option(value, name, minimum=0.0, maximum=None, optional=False):
    """Seconds (float) of the duration option ``name``, within ``[minimum, maximum]`` seconds.

    ``None`` stays ``None`` when the option is ``optional`` (unset: no limit). A value without a unit,
    anything else that is not a duration, or one out of bounds raises DurationError with one line
    naming the option and its bounds in the same units ('between 1ms and 24d20h31m23s647ms').
    """
    if value is None and optional:
        return None
    if isinstance(value, bool):
        raise DurationError('%s: %r is not a duration with a unit (for example %r)'
                            % (name, value, format_duration(max(minimum, 1))))
    seconds = parse_duration(value, name)
    if seconds < minimum or (maximum is not None and seconds > maximum):
        bound = ('between %s and %s' % (format_duration(minimum), format_duration(maximum)) if maximum is not None
                 else 'at least %s' % format_duration(minimum))
        hint = ' (leave it unset for no limit)' if optional and seconds < minimum else ''
        raise DurationError('%s must be %s, got %r%s' % (name, bound, value, hint))
    return seconds


def format_duration(seconds):
    """A short text for a number of seconds, to the millisecond: '2h', '1h30m', '45s', '500ms'."""
    milliseconds = int(round(seconds * 1000))
    if milliseconds <= 0:
        return '0s'
    out = []
    for unit, size in (('d', 86400000), ('h', 3600000), ('m', 60000), ('s', 1000), ('ms', 1)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            out.append('%d%s' % (count, unit))
    return ''.join(out)
