# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error base class of the collection's engines.

An engine refuses or fails with an ``EngineError`` (or a subclass named after its domain). Its
message is one line a task can show as it is; ``result`` holds what the engine had done before it
stopped (rows moved, keys deleted, files rolled back...), so a module fails with the partial result
in the same keys a success would return - an operator sees what changed, never "failed" alone.

Plain Python (no Ansible imports).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class EngineError(Exception):
    """Refused or failed: a one-line message, and ``result``: what was done so far (a dict, maybe empty)."""

    def __init__(self, message, result=None):
        super(EngineError, self).__init__(message)
        self.result = dict(result or {})


def fail_engine_error(module, error, msg=None, **result):
    """End an Ansible task for an engine error, the same way in every module.

    ``msg`` is the error's one line unless the module words it itself; the keys of ``error.result``
    (what the engine had done before it stopped) come next, then ``result`` (keys the module adds or
    overrides). ``changed`` is False unless one of them says otherwise. Takes the module as an
    argument, so this file stays free of Ansible imports.
    """
    failure = dict(changed=False)
    failure.update(getattr(error, 'result', None) or {})
    failure.update(result)
    failure.pop('msg', None)
    module.fail_json(msg=msg or str(error), **failure)
