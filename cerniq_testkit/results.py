"""Checks of a module's result shared by the tests: a clear one-line failure, never a traceback, no key
Ansible reserves, every key documented."""

import ast
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def traceback_in(result):
    """The traceback text a module run left in its result or on stderr ('' when none)."""
    for text in (result.get('exception'), result.get('module_stderr'), result.stderr, result.get('msg')):
        if isinstance(text, str) and 'Traceback (most recent call last)' in text:
            return text
    return ''


def assert_refused(result, *words):
    """The run failed with one line naming each of ``words``: no traceback, no 'MODULE FAILURE'."""
    assert result.failed and result.rc == 1, result
    assert isinstance(result.get('msg'), str) and result['msg'].strip(), result
    assert '\n' not in result['msg'].strip() and 'MODULE FAILURE' not in result['msg'], result
    assert not traceback_in(result) and 'exception' not in result, result
    for word in words:
        assert word in result['msg'], (word, result['msg'])


# Result keys Ansible itself interprets (ansible-core 2.19), so a module must not return them with another
# meaning:
# - task status, read by ansible.executor.task_result (is_failed/is_changed/is_skipped/is_unreachable) and
#   by the tests ``is failed|changed|skipped|unreachable|timedout|started|finished``:
#   failed, changed, skipped, unreachable, failed_when_result, timedout, started, finished;
# - results: loop results - TaskResult ORs the items' failed/changed/skipped into the task's status and
#   the ``changed`` test reads them;
# - rc: TaskExecutor marks a result without ``failed`` as failed when rc is not 0;
# - ansible_facts (merged into the host's facts), ansible_job_id and results_file (async), attempts and
#   retries (until loops), item / ansible_loop_var / ansible_index_var (loops);
# - set by AnsibleModule itself: invocation, warnings, deprecations, exception;
# - stdout / stderr (the action plugin derives stdout_lines / stderr_lines, callbacks print them on
#   failure), module_stdout / module_stderr (Ansible's own report of a module crash);
# - any key starting with ``_ansible_``.
# ``changed`` (a bool), ``msg`` (a text), ``diff`` (before/after) and ``failed`` (true, set by fail_json) may
# be returned with exactly their Ansible meaning.
RESERVED_RESULT_KEYS = frozenset([
    'failed', 'changed', 'skipped', 'unreachable', 'failed_when_result', 'timedout', 'started', 'finished',
    'results', 'rc', 'ansible_facts', 'ansible_job_id', 'results_file', 'attempts', 'retries', 'item',
    'ansible_loop_var', 'ansible_index_var', 'invocation', 'warnings', 'deprecations', 'exception',
    'stdout', 'stderr', 'stdout_lines', 'stderr_lines', 'module_stdout', 'module_stderr'])
ANSIBLE_MEANING_KEYS = frozenset(['changed', 'msg', 'diff', 'failed'])
# Keys AnsibleModule adds to every result.
ADDED_BY_ANSIBLE = frozenset(['invocation', 'warnings', 'deprecations', 'failed', 'changed', 'msg'])


def reserved_key_misuse(result):
    """Problems with the reserved keys of a module's real result (``[]`` when none)."""
    problems = ['returns %r' % key for key in sorted(result) if key.startswith('_ansible_')
                or (key in RESERVED_RESULT_KEYS and key not in ANSIBLE_MEANING_KEYS | ADDED_BY_ANSIBLE)]
    if 'changed' in result and not isinstance(result['changed'], bool):
        problems.append('changed is %r, not a bool' % (result['changed'],))
    if 'failed' in result and result['failed'] is not True:
        problems.append('failed is %r (only fail_json sets it, to true)' % (result['failed'],))
    if 'msg' in result and not isinstance(result['msg'], str):
        problems.append('msg is %r, not a text' % (result['msg'],))
    if 'diff' in result and not (isinstance(result['diff'], (dict, list))):
        problems.append('diff is %r, not before/after' % (result['diff'],))
    return problems


def documented_keys(module):
    """The top-level keys ``module`` documents in RETURN (read from the source, without importing it)."""
    with open(os.path.join(REPO, 'plugins', 'modules', module + '.py')) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == 'RETURN':
            return set(yaml.safe_load(node.value.value) or {})
    raise AssertionError('%s has no RETURN' % module)
