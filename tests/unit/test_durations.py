"""The shared duration parser (plugins/module_utils/durations.py) and its terms."""

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.durations import (
    DurationError,
    duration_option,
    duration_terms,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize('text, seconds', [
    ('500ms', 0.5), ('30s', 30), ('2h', 7200), ('1h30m', 5400), ('1h 30m', 5400), ('90 days', 7776000),
    ('1 week', 604800), ('1.5 minutes', 90),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize('text', ['30', '', None, '-1s', '90 days ago', '1 fortnight', '3 months', 'P1D', '1s junk'])
def test_parse_duration_refuses(text):
    with pytest.raises(DurationError, match='is not a duration with a unit'):
        parse_duration(text, 'timeout')


def test_duration_terms_with_extra_units():
    units = dict(mon=None, months=None, d=86400)
    assert duration_terms('3 months 2d', units=units) == [(3.0, 'months'), (2.0, 'd')]
    assert duration_terms('1H30M') == [(1.0, 'h'), (30.0, 'm')]
    with pytest.raises(DurationError):
        duration_terms('2 weeks', units=units)


@pytest.mark.parametrize('seconds, text', [(0, '0s'), (0.5, '500ms'), (45, '45s'), (5400, '1h30m'),
                                           (86400 * 90, '90d'), (2147483.647, '24d20h31m23s647ms')])
def test_format_duration_reads_back(seconds, text):
    assert format_duration(seconds) == text
    assert text == '0s' or abs(parse_duration(text) - seconds) < 0.001


def test_duration_option_bounds_and_unset():
    assert duration_option('1m', 'lock_timeout', 0.001, 3600) == 60
    assert duration_option(None, 'time_budget', 1, optional=True) is None
    with pytest.raises(DurationError, match=r"lock_timeout must be between 1ms and 1h, got '2h'"):
        duration_option('2h', 'lock_timeout', 0.001, 3600)
    with pytest.raises(DurationError, match=r"time_budget must be at least 1s, got '0s' \(leave it unset"):
        duration_option('0s', 'time_budget', 1, optional=True)
    for bad in (30, '30', True, None, 1.5):
        with pytest.raises(DurationError, match='lock_timeout'):
            duration_option(bad, 'lock_timeout', 0.001, 3600)
