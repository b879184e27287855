"""The shared duration parser (plugins/module_utils/durations.py) and its terms."""

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.durations import (
    DurationError,
    duration_terms,
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
