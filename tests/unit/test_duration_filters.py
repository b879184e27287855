"""The duration filters the rule templates and role defaults use (plugins/filter/durations.py)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cerniq.ops.plugins.filter.durations import duration_seconds, prometheus_duration


@pytest.mark.parametrize('value, seconds', [('1h', 3600), ('10 min', 600), ('1h30m', 5400), ('500ms', 0.5),
                                            (90, 90), ('8 days', 691200)])
def test_duration_seconds(value, seconds):
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize('value, text', [('90 min', '1h30m'), ('1h', '1h'), (3900, '1h5m'), ('26h', '26h'), ('1 day', '24h'),
                                         ('15m', '15m'), (0, '0s'), ('1h 0m 5s', '1h5s')])
def test_prometheus_duration(value, text):
    assert prometheus_duration(value) == text


@pytest.mark.parametrize('value', ['30', '', None, True, 'soon'])
def test_a_duration_without_a_unit_is_refused(value):
    with pytest.raises(AnsibleFilterError, match='not a duration with a unit'):
        duration_seconds(value)


def test_prometheus_has_no_fractions_of_a_second():
    with pytest.raises(AnsibleFilterError, match='whole, positive'):
        prometheus_duration('500ms')
