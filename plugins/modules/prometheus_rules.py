#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: prometheus_rules
short_description: Deploy a set of Prometheus rule files as one unit, proven loaded, rolled back on any failure
description:
  - Deploys the rule files of O(files) (content given by the caller - copied or rendered on the
    controller) into O(rules_dir) as one unit, so a broken set never stays live.
  - Validates every file with C(promtool check rules) (C(--lint-fatal) by default) and runs the
    C(promtool test rules) files of O(tests), all on a temporary copy. A failure stops the task before
    anything is written.
  - Writes each changed file atomically (temporary file and rename) with O(owner), O(group) and O(mode),
    and removes the files it wrote earlier that are no longer in the set. It records what it wrote in a
    manifest, C(.cerniq-rules-manifest.json) in O(rules_dir); files it did not write are left alone
    unless O(exclusive=true).
  - Reloads Prometheus (O(reload)), waits until the reload is processed, then verifies through
    C(/api/v1/rules) that Prometheus has, for the files of the set, exactly their groups with their rule
    counts (and nothing of the removed files), and that C(prometheus_config_last_reload_successful) is 1.
  - When writing, reloading or verifying fails, the previous files (content, mode, owner) and manifest
    are restored, Prometheus is reloaded again, and the task fails saying why and whether the rollback
    reload succeeded (RV(rolled_back)).
  - When nothing changed, nothing is written and Prometheus is not reloaded; the loaded rules are still
    verified, and Prometheus is reloaded (reported as a change) only if it does not run the files on disk.
version_added: 0.1.0
author:
  - cerniq.ops contributors (@cerniq)
requirements:
  - promtool (Debian C(prometheus)) and PyYAML (Debian C(python3-yaml)) on the host.
attributes:
  check_mode:
    support: full
    description:
      - Validates with promtool and reports the files and rules that would be added, changed or removed;
        writes nothing and does not reload. Without promtool on the host (not installed yet), the
        validation is skipped with a warning; without PyYAML, only file-level changes are reported.
  diff_mode:
    support: full
    description: The text of every file added, changed or removed, before and after.
options:
  rules_dir:
    description: Absolute directory of the rule files; created when missing. Must be covered by a C(rule_files) glob of C(prometheus.yml).
    type: path
    required: true
  files:
    description: The complete set of rule files for O(rules_dir).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: File name in O(rules_dir), ending in C(.yml) or C(.yaml).
        type: str
        required: true
      content:
        description: The file's text (Prometheus templates such as C({{ $labels.x }}) must reach it unrendered).
        type: str
        required: true
  tests:
    description:
      - C(promtool test rules) files run against the new files before anything is written.
      - Each C(rule_files) entry of a test is resolved by its file name to the file of O(files) with that
        name, so tests written for the source tree (C(../../rules/x.yml)) work unchanged.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the test (shown in messages).
        type: str
        required: true
      content:
        description: The test file's text.
        type: str
        required: true
  exclusive:
    description:
      - The directory belongs to this task - every C(*.yml)/C(*.yaml) in it that is not in O(files) is
        removed, also files it did not write. Off, only files recorded in its manifest are removed.
    type: bool
    default: false
  owner:
    description: Owner of the rule files (default - the user the module runs as).
    type: str
  group:
    description: Group of the rule files; Prometheus' user must be able to read them.
    type: str
  mode:
    description: Mode of the rule files, in octal.
    type: str
    default: '0644'
  promtool_path:
    description: The promtool binary (looked up on PATH when not absolute).
    type: path
    default: promtool
  lint_fatal:
    description: Pass C(--lint-fatal) to C(promtool check rules) (duplicate rules become errors).
    type: bool
    default: true
  reload:
    description:
      - How Prometheus is reloaded. V(http) - C(POST /-/reload) (Prometheus needs C(--web.enable-lifecycle)).
        V(signal) - SIGHUP to O(pid) or the pid in O(pid_file). V(systemd) - C(systemctl reload O(service))
        (Debian's unit sends SIGHUP). V(none) - only validate and write (no reload, no verification).
    type: str
    choices: [http, signal, systemd, none]
    default: http
  prometheus_url:
    description: Base URL of that Prometheus, for example C(http://127.0.0.1:9090). Required unless O(reload=none).
    type: str
  pid:
    description: Process id of Prometheus, with O(reload=signal).
    type: int
  pid_file:
    description: File holding the process id of Prometheus, with O(reload=signal).
    type: path
  service:
    description: systemd unit of Prometheus, with O(reload=systemd).
    type: str
    default: prometheus
  reload_timeout:
    description: How long Prometheus may take to process a reload, as a duration with a unit; C(0s) to C(1h).
    type: str
    default: 30s
  validate_certs:
    description: Verify the TLS certificate of Prometheus.
    type: bool
    default: true
  timeout:
    description: How long to wait for each HTTP call to Prometheus, as a duration with a unit; C(1ms) to C(1h).
    type: str
    default: 10s
notes:
  - Tested against a real Prometheus 2.42 and promtool (tests/integration/test_prometheus_rules.py) - a broken
    file never goes live, a reload failure and a verification failure roll back, a rerun reports no change.
  - The files are a unit on disk only between two reloads - Prometheus reads them on a reload or a start,
    and the module reloads once, after the whole set is written.
seealso:
  - name: Prometheus recording and alerting rules
    description: Rule files, C(promtool check rules) and C(promtool test rules).
    link: https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/
'''

EXAMPLES = r'''
- name: Deploy the site's alert rules with their unit tests
  cerniq.ops.prometheus_rules:
    rules_dir: /etc/prometheus/rules.d/site
    files:
      - name: site.yml
        content: "{{ lookup('ansible.builtin.file', 'rules/site.yml') }}"
    tests:
      - name: site.test.yml
        content: "{{ lookup('ansible.builtin.file', 'rules/site.test.yml') }}"
    group: prometheus
    reload: systemd
    prometheus_url: http://127.0.0.1:9090

- name: Rules rendered from a template, for a Prometheus that runs outside systemd
  cerniq.ops.prometheus_rules:
    rules_dir: /srv/prometheus/rules
    files:
      - name: thresholds.yml
        content: "{{ lookup('ansible.builtin.template', 'thresholds.yml.j2') }}"
    reload: signal
    pid_file: /run/prometheus.pid
    prometheus_url: http://127.0.0.1:9090
  register: rules

- name: Show what changed
  ansible.builtin.debug:
    msg: "added {{ rules.rules_added }}, changed {{ rules.rules_changed }}, removed {{ rules.rules_removed }}"
'''

RETURN = r'''
files_added:
  description: Rule files written that did not exist.
  returned: always
  type: list
  elements: str
  sample: [cerniq-imports.yml]
files_changed:
  description: Rule files whose content or owner, group or mode was changed.
  returned: always
  type: list
  elements: str
  sample: [cerniq-queues.yml]
files_removed:
  description: Rule files removed (written earlier by this module, or any unlisted one with O(exclusive)).
  returned: always
  type: list
  elements: str
  sample: []
rules_added:
  description: Rules that are new, as C(file - group/name); siblings of the same name carry their labels.
  returned: always
  type: list
  elements: str
  sample: ['cerniq-queues.yml: cerniq-queues/QueueStalled{escalation=exec,service=queue,severity=sev2}']
rules_changed:
  description: Rules whose expression, C(for), labels or annotations changed.
  returned: always
  type: list
  elements: str
  sample: ['cerniq-nodes.yml: cerniq-nodes/NodeDiskUsage']
rules_removed:
  description: Rules that are gone.
  returned: always
  type: list
  elements: str
  sample: []
groups:
  description: The groups of the set with their rule counts - what Prometheus was verified to have loaded.
  returned: always
  type: list
  elements: dict
  sample: [{file: cerniq-queues.yml, group: cerniq-queues, rules: 16}]
reloaded:
  description: Whether Prometheus was reloaded (and verified).
  returned: always
  type: bool
  sample: true
tests_run:
  description: Names of the O(tests) that promtool ran and passed.
  returned: always
  type: list
  elements: str
  sample: [cerniq-queues.test.yml]
rolled_back:
  description: On a failure after writing - the previous files were restored (the message says whether the rollback reload succeeded).
  returned: failure
  type: bool
  sample: true
validation_output:
  description: promtool's output when it refused the files or a test failed.
  returned: failure
  type: str
file:
  description: The rule file a failure is about, when it is about one (for example one that is not valid YAML).
  returned: failure
  type: str
'''

import grp
import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cerniq.ops.plugins.module_utils.durations import duration_option
from ansible_collections.cerniq.ops.plugins.module_utils.errors import fail_engine_error
from ansible_collections.cerniq.ops.plugins.module_utils.http_request import module_request
from ansible_collections.cerniq.ops.plugins.module_utils.prometheus_rules import HAS_YAML, Prometheus, RulesError, deploy

FILE_SPEC = dict(name=dict(type='str', required=True), content=dict(type='str', required=True))


def _ids(module):
    params = module.params
    try:
        uid = pwd.getpwnam(params['owner']).pw_uid if params['owner'] else -1
        gid = grp.getgrnam(params['group']).gr_gid if params['group'] else -1
    except (KeyError, ValueError):  # ValueError: a name with a NUL byte
        module.fail_json(msg='unknown owner or group: owner %r, group %r' % (params['owner'], params['group']))
    try:
        mode = int(params['mode'], 8)
    except ValueError:
        module.fail_json(msg='mode %r is not an octal mode such as 0644' % params['mode'])
    return uid, gid, mode


def _promtool(module):
    path = module.params['promtool_path']
    found = path if os.path.isabs(path) and os.access(path, os.X_OK) else module.get_bin_path(path)
    if found:
        return found
    if module.check_mode:
        module.warn('%s not found: the rule files were not validated (check mode)' % path)
        return None
    module.fail_json(msg='%s not found: promtool (Debian package prometheus) validates the rule files' % path)


def _named(module, items, what):
    named = {}
    for item in items:
        if item['name'] in named:
            module.fail_json(msg='%s %s is given twice' % (what, item['name']))
        named[item['name']] = item['content']
    return named


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules_dir=dict(type='path', required=True),
            files=dict(type='list', elements='dict', required=True, options=FILE_SPEC),
            tests=dict(type='list', elements='dict', default=[], options=FILE_SPEC),
            exclusive=dict(type='bool', default=False),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='str', default='0644'),
            promtool_path=dict(type='path', default='promtool'),
            lint_fatal=dict(type='bool', default=True),
            reload=dict(type='str', choices=['http', 'signal', 'systemd', 'none'], default='http'),
            prometheus_url=dict(type='str'),
            pid=dict(type='int'),
            pid_file=dict(type='path'),
            service=dict(type='str', default='prometheus'),
            reload_timeout=dict(type='str', default='30s'),
            validate_certs=dict(type='bool', default=True),
            timeout=dict(type='str', default='10s'),
        ),
        required_if=[('reload', 'http', ['prometheus_url']), ('reload', 'signal', ['prometheus_url']),
                     ('reload', 'systemd', ['prometheus_url']), ('reload', 'signal', ['pid', 'pid_file'], True)],
        mutually_exclusive=[('pid', 'pid_file')],
        supports_check_mode=True,
    )
    params = module.params
    files = _named(module, params['files'], 'rule file')
    tests = _named(module, params['tests'], 'test')
    uid, gid, mode = _ids(module)
    promtool = _promtool(module)
    if module.check_mode and not HAS_YAML:
        module.warn('PyYAML (python3-yaml) is not installed yet: only file-level changes are reported (check mode)')
    prometheus = None
    try:
        http_timeout = duration_option(params['timeout'], 'timeout', 0.001, 3600)
        reload_timeout = duration_option(params['reload_timeout'], 'reload_timeout', 0, 3600)
        if params['reload'] != 'none':
            prometheus = Prometheus(params['prometheus_url'], module_request(module, timeout=http_timeout),
                                    method=params['reload'], pid=params['pid'], pid_file=params['pid_file'],
                                    service=params['service'], timeout=reload_timeout)
        result = deploy(params['rules_dir'], files, tests, promtool=promtool, lint_fatal=params['lint_fatal'],
                        exclusive=params['exclusive'], mode=mode, uid=uid, gid=gid, prometheus=prometheus,
                        check_mode=module.check_mode)
    except RulesError as error:
        fail_engine_error(module, error, changed=False)   # rolled back: nothing stays changed
    except ValueError as error:
        module.fail_json(msg=str(error))

    diff = result.pop('diff')
    if module._diff:
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
