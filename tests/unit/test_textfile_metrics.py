"""Textfile-collector output: valid exposition text, written atomically."""

import os

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils import textfile_metrics as tm


def test_render_escapes_labels_and_writes_help_once():
    text = tm.render([
        ('cerniq_x', 'Help.', 'gauge', {'job': 'a"b\\c\nd'}, 1.5),
        ('cerniq_x', 'Help.', 'gauge', {'job': 'e'}, True),
        ('cerniq_y', 'Other.', 'counter', None, 3),
    ])
    assert text.count('# HELP cerniq_x') == 1
    assert 'cerniq_x{job="a\\"b\\\\c\\nd"} 1.5' in text
    assert 'cerniq_x{job="e"} 1' in text
    assert text.endswith('cerniq_y 3\n')


@pytest.mark.parametrize('name, labels', [('bad-name', None), ('ok', {'bad-label': 'x'})])
def test_render_rejects_invalid_names(name, labels):
    with pytest.raises(ValueError):
        tm.render([(name, 'h', 'gauge', labels, 1)])


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / 'job.prom'
    path.write_text('old\n')
    tm.write_metrics(str(path), [('cerniq_z', 'h', 'gauge', {}, 2)])
    assert path.read_text().endswith('cerniq_z 2\n')
    assert os.listdir(tmp_path) == ['job.prom']
    assert oct(path.stat().st_mode & 0o777) == '0o644'
    assert tm.read_sample(str(path), 'cerniq_z') == 2.0
    assert tm.read_sample(str(tmp_path / 'missing.prom'), 'cerniq_z') is None
