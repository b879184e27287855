"""prometheus_rules' manifest: a corrupt one owns nothing (found by a hostile hunt: '{"files": 1}' was a
TypeError traceback in check mode)."""

import json

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.prometheus_rules import MANIFEST, read_manifest


@pytest.mark.parametrize('content', ['{"files": 1}', '[1, 2]', '{"files": ["a.yml"]}', '{"files": {"a.yml": 2}}',
                                     'not json', '{"files": null}', '"text"'])
def test_a_manifest_of_another_shape_owns_nothing(tmp_path, content):
    (tmp_path / MANIFEST).write_text(content)
    assert read_manifest(str(tmp_path)) == {}


def test_the_manifest_the_engine_writes_is_read_back(tmp_path):
    files = {'queues.yml': 'ab' * 32, 'nodes.yml': 'cd' * 32}
    (tmp_path / MANIFEST).write_text(json.dumps({'managed_by': 'cerniq.ops.prometheus_rules', 'files': files}))
    assert read_manifest(str(tmp_path)) == files
    assert read_manifest(str(tmp_path / 'missing')) == {}
