# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations with units in templates: the settings of the cerniq role are written like the
collection's options ('10m', '1h30m', '90 days'); rule templates and role defaults turn them
into seconds or into Prometheus' duration syntax with these filters."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, parse_duration

# Prometheus reads a duration as whole units from the largest down, each unit at most once. Hours are
# the largest unit written here: '24h' reads as the runbook writes it, where '1d' would not.
_PROMETHEUS_UNITS = (('h', 3600), ('m', 60), ('s', 1))


def _seconds(value, name):
    if isinstance(value, bool):
        raise AnsibleFilterError('%s: %r is not a duration with a unit' % (name, value))
    if isinstance(value, (int, float)):
        return value
    try:
        return parse_duration(value, name)
    except DurationError as error:
        raise AnsibleFilterError(str(error))


def duration_seconds(value):
    """'1h30m' -> 5400 (an int when whole); a number passes as seconds; no unit is refused."""
    seconds = _seconds(value, 'duration_seconds')
    return int(seconds) if float(seconds).is_integer() else seconds


def prometheus_duration(value):
    """'90 min' or 5400 -> '1h30m', the form Prometheus' for:, ranges and durations take."""
    seconds = _seconds(value, 'prometheus_duration')
    if seconds < 0 or not float(seconds).is_integer():
        raise AnsibleFilterError('prometheus_duration: %r is not a whole, positive number of seconds' % (value,))
    seconds = int(seconds)
    parts = []
    for unit, size in _PROMETHEUS_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append('%d%s' % (count, unit))
    return ''.join(parts) or '0s'


class FilterModule(object):
    def filters(self):
        return {'duration_seconds': duration_seconds, 'prometheus_duration': prometheus_duration}
