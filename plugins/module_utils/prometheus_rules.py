# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploy a set of Prometheus rule files as one unit, so that a bad set never stays live (plain Python).

One deployment:

1. **Plan** - compare the wanted files with the rules directory: files added, changed (content or
   owner/group/mode) and removed, and at rule level the rules added, changed and removed. The files
   removed are those this engine wrote earlier (listed in its manifest, ``MANIFEST`` in the
   directory) that are no longer in the set - or, with ``exclusive``, every ``*.yml``/``*.yaml``
   not in the set.
2. **Validate** on a temporary copy: ``promtool check rules`` (``--lint-fatal`` by default) on every
   file of the set, then ``promtool test rules`` on the given test files, whose ``rule_files`` are
   pointed at the copies by file name. A failure stops here: nothing was written.
3. **Write** each file atomically (temporary file in the directory, fsync, rename), delete the
   removed ones, write the manifest. The previous bytes and modes are kept in memory.
4. **Reload** Prometheus (``POST /-/reload``, SIGHUP to a pid or pid file, or ``systemctl reload``)
   and wait until it processed the reload (``prometheus_config_last_reload_success_timestamp_seconds``
   moved, or ``prometheus_config_last_reload_successful`` dropped to 0).
5. **Verify** that ``prometheus_config_last_reload_successful`` is 1 and that ``/api/v1/rules`` lists,
   for the files of the set, exactly the groups of the files with their rule counts (and nothing from
   the removed files).
6. On a failure in 3-5 the previous files and manifest are put back, Prometheus is reloaded again and
   the error says why, and whether the rollback reload succeeded.

Nothing changed -> nothing written, no reload; the live state is still verified, and reloaded when
Prometheus does not run the files on disk. Check mode runs 1-2 only.

HTTP goes through a ``request(method, url, payload) -> (status, text)`` callable
(``http_request.module_request`` in the module).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

try:
    import yaml
except ImportError:  # pragma: no cover - reported by check_requirements()
    yaml = None
HAS_YAML = yaml is not None

from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.http_request import error_line

MANIFEST = '.cerniq-rules-manifest.json'
RULE_SUFFIXES = ('.yml', '.yaml')
_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$')
_METRIC = re.compile(r'^(prometheus_config_last_reload_success_timestamp_seconds|'
                     r'prometheus_config_last_reload_successful)\s+(\S+)\s*$', re.MULTILINE)


class RulesError(EngineError):
    """A deployment that cannot go ahead, or that failed and was rolled back; ``details`` go into the result."""

    def __init__(self, message, **details):
        super(RulesError, self).__init__(message, details)


def check_requirements(check_mode=False):
    """Whether the rule files can be read; without PyYAML only check mode goes on (file level only)."""
    if yaml is None and not check_mode:
        raise RulesError('PyYAML is needed on the Prometheus host to read rule files (Debian: python3-yaml)')
    return yaml is not None


# ---------------------------------------------------------------------------- reading rule files

def _load(name, text):
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        raise RulesError('%s is not valid YAML: %s' % (name, str(error).splitlines()[0]), file=name)
    if data is None:
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get('groups', []), list):
        raise RulesError('%s: a rule file is a mapping with a list of groups' % name, file=name)
    return data


def groups_of(name, text):
    """[(group name, rule count)] of a rule file, in file order."""
    return [(str(g.get('name')), len(g.get('rules') or [])) for g in _load(name, text).get('groups') or []
            if isinstance(g, dict)]


def rules_of(name, text):
    """{display key: rule} of a rule file. Sibling rules (same group and name, as escalation levels
    are) are told apart by their labels."""
    rules = {}
    for group in _load(name, text).get('groups') or []:
        if not isinstance(group, dict):
            continue
        entries = [r for r in group.get('rules') or [] if isinstance(r, dict)]
        names = [r.get('alert') or r.get('record') for r in entries]
        for rule, rule_name in zip(entries, names):
            key = '%s: %s/%s' % (name, group.get('name'), rule_name)
            if names.count(rule_name) > 1:
                labels = rule.get('labels') or {}
                key += '{%s}' % ','.join('%s=%s' % (k, labels[k]) for k in sorted(labels))
            while key in rules:
                key += "'"
            rules[key] = rule
    return rules


def rule_changes(before, after):
    """Rules added, changed and removed between two {file name: text} sets (display keys, sorted)."""
    old, new = {}, {}
    for name, text in before.items():
        old.update(rules_of(name, text))
    for name, text in after.items():
        new.update(rules_of(name, text))
    return (sorted(set(new) - set(old)), sorted(k for k in set(new) & set(old) if new[k] != old[k]),
            sorted(set(old) - set(new)))


# ---------------------------------------------------------------------------- the directory

def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_manifest(rules_dir):
    """{file name: checksum} of the files this engine wrote earlier. A manifest that cannot be read or
    is not of the shape ``_write_manifest`` writes owns nothing: no file is removed on its word."""
    try:
        with open(os.path.join(rules_dir, MANIFEST)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    files = data.get('files') if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(isinstance(n, str) and isinstance(d, str) for n, d in files.items()):
        return {}
    return dict(files)


def _rule_file_names(rules_dir):
    try:
        return sorted(n for n in os.listdir(rules_dir) if n.endswith(RULE_SUFFIXES) and not n.startswith('.')
                      and os.path.isfile(os.path.join(rules_dir, n)))
    except OSError as error:
        if error.errno == errno.ENOENT:
            return []
        raise


def _snapshot(path):
    """(bytes, mode, uid, gid) of a file, or None."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return None
        raise
    return data, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def write_atomically(path, data, mode=0o644, uid=-1, gid=-1):
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------- promtool

def _run(argv, what):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
                              universal_newlines=True, timeout=300)
    except OSError as error:
        raise RulesError('%s: cannot run %s: %s' % (what, argv[0], error_line(error)))
    except subprocess.TimeoutExpired:
        raise RulesError('%s: %s did not finish within 300 s' % (what, argv[0]))
    return proc.returncode, proc.stdout


def _promtool_errors(output, scratch):
    """promtool's findings on one line, with the temporary paths taken out."""
    lines = [line.strip() for line in output.replace(scratch + os.sep, '').splitlines()]
    found = [line for line in lines if line and not line.startswith(('Checking ', 'Unit Testing: ', 'SUCCESS'))
             and line not in ('FAILED:', 'FAILED')]
    return ' | '.join(found)[:2000] or 'no details (exit status only)'


def validate(files, tests, promtool, lint_fatal=True):
    """promtool check rules on copies of ``files`` ({name: text}), then promtool test rules on ``tests``.

    Returns the names of the test files run. Raises RulesError with promtool's output on a failure.
    """
    scratch = tempfile.mkdtemp(prefix='cerniq-rules-')
    try:
        staged = {}
        for name, text in files.items():
            staged[name] = os.path.join(scratch, name)
            with open(staged[name], 'w') as handle:
                handle.write(text)
        refused, outputs = [], []
        for name in sorted(staged):  # one file per call: promtool's errors then name their file
            rc, output = _run([promtool, 'check', 'rules'] + (['--lint-fatal'] if lint_fatal else []) + [staged[name]],
                              'promtool check rules')
            if rc != 0:
                refused.append('%s: %s' % (name, _promtool_errors(output, scratch)))
                outputs.append(output)
        if refused:
            raise RulesError('promtool check rules refused the rule files, nothing was changed: %s'
                             % '; '.join(refused), validation_output='\n'.join(outputs))
        test_paths = []
        for name, text in tests.items():
            data = _load(name, text)
            rule_files = []
            for entry in data.get('rule_files') or []:
                base = os.path.basename(str(entry))
                if base not in staged:
                    raise RulesError('test %s reads rule file %s, which is not in the set (%s)'
                                     % (name, entry, ', '.join(sorted(staged)) or 'empty'))
                rule_files.append(staged[base])
            data['rule_files'] = rule_files
            path = os.path.join(scratch, 'test-' + name)
            with open(path, 'w') as handle:
                yaml.safe_dump(data, handle, default_flow_style=False)
            test_paths.append(path)
        if test_paths:
            rc, output = _run([promtool, 'test', 'rules'] + test_paths, 'promtool test rules')
            if rc != 0:
                raise RulesError('promtool test rules failed, nothing was changed: %s'
                                 % _promtool_errors(output, scratch), validation_output=output)
        return sorted(tests)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------- the live Prometheus

class Prometheus(object):
    """Reload and read back one Prometheus.

    ``method``: ``http`` (POST /-/reload, needs --web.enable-lifecycle), ``signal`` (SIGHUP to
    ``pid`` or the pid in ``pid_file``), ``systemd`` (systemctl reload ``service``).
    """

    def __init__(self, url, request, method='http', pid=None, pid_file=None, service=None, timeout=30,
                 sleep=time.sleep, clock=time.monotonic, wall=time.time):
        self.url = url.rstrip('/')
        self.request = request
        self.method = method
        self.pid = pid
        self.pid_file = pid_file
        self.service = service
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.wall = wall

    def _get(self, path):
        try:
            status, text = self.request('GET', self.url + path)
        except OSError as error:
            raise RulesError('Prometheus at %s does not answer: %s' % (self.url, error_line(error)))
        if status != 200:
            raise RulesError('GET %s%s: HTTP %s: %s' % (self.url, path, status, text.strip()[:300]))
        return text

    def reload_status(self):
        """(last successful reload time, last reload successful) from Prometheus' own /metrics."""
        found = dict(_METRIC.findall(self._get('/metrics')))
        if len(found) != 2:
            raise RulesError('%s/metrics has no prometheus_config_last_reload_* metrics: is this Prometheus?'
                             % self.url)
        return float(found['prometheus_config_last_reload_success_timestamp_seconds']), \
            float(found['prometheus_config_last_reload_successful']) == 1

    def _target_pid(self):
        if self.pid:
            return int(self.pid)
        try:
            with open(self.pid_file) as handle:
                return int(handle.read().split()[0])
        except (OSError, ValueError, IndexError) as error:
            raise RulesError('cannot read a pid from %s: %s' % (self.pid_file, error_line(error)))

    def _trigger(self):
        if self.method == 'http':
            try:
                status, text = self.request('POST', self.url + '/-/reload')
            except OSError as error:
                raise RulesError('POST %s/-/reload: %s' % (self.url, error_line(error)))
            if status != 200:
                hint = ' (start Prometheus with --web.enable-lifecycle, or reload by signal or systemd)' \
                    if status in (403, 405) else ''
                raise RulesError('Prometheus refused the reload: HTTP %s: %s%s' % (status, text.strip()[:500], hint))
        elif self.method == 'signal':
            pid = self._target_pid()
            try:
                os.kill(pid, signal.SIGHUP)
            except OSError as error:
                raise RulesError('cannot send SIGHUP to pid %d: %s' % (pid, error_line(error)))
        elif self.method == 'systemd':
            rc, output = _run(['systemctl', 'reload', self.service], 'systemctl reload %s' % self.service)
            if rc != 0:
                raise RulesError('systemctl reload %s failed: %s' % (self.service, output.strip()[:500]))
        else:
            raise RulesError('unknown reload method %r' % self.method)

    def reload(self):
        """Reload and wait until Prometheus processed it; RulesError unless it loaded everything."""
        before, before_ok = self.reload_status()
        # The success time has a resolution of one second: make a new one distinguishable.
        while self.wall() < before + 1:
            self.sleep(0.1)
        self._trigger()
        deadline = self.clock() + self.timeout
        while True:
            after, ok = self.reload_status()
            if after != before and ok:
                return
            if before_ok and not ok:
                raise RulesError('Prometheus could not load the new rules (prometheus_config_last_reload_successful '
                                 '0); see its log')
            if self.clock() >= deadline:
                raise RulesError('Prometheus did not report a successful reload within %d s (reload successful: %s)'
                                 % (self.timeout, 1 if ok else 0))
            self.sleep(0.2)

    def loaded_groups(self):
        """{file (real path): [(group name, rule count)]} from /api/v1/rules."""
        try:
            answer = json.loads(self._get('/api/v1/rules'))
        except ValueError:
            raise RulesError('%s/api/v1/rules: the answer is not JSON' % self.url)
        loaded = {}
        for group in (answer.get('data') or {}).get('groups') or []:
            path = os.path.realpath(group.get('file') or '')
            loaded.setdefault(path, []).append((group.get('name'), len(group.get('rules') or [])))
        return loaded

    def verify(self, expected, gone=()):
        """RulesError unless the last reload succeeded and each expected file has exactly its groups."""
        if not self.reload_status()[1]:
            raise RulesError('prometheus_config_last_reload_successful is 0: Prometheus does not run the files on disk')
        loaded = self.loaded_groups()
        problems = []
        for path, groups in sorted(expected.items()):
            have = sorted(loaded.get(os.path.realpath(path), []))
            if have != sorted(groups):
                problems.append('%s: expected %s, Prometheus has %s' % (
                    os.path.basename(path), _groups_text(groups), _groups_text(have) if have else 'nothing'))
        for path in gone:
            if loaded.get(os.path.realpath(path)):
                problems.append('%s was removed but Prometheus still has %s'
                                % (os.path.basename(path), _groups_text(loaded[os.path.realpath(path)])))
        if problems:
            raise RulesError('Prometheus does not run exactly the deployed rules (%s); is the rules directory '
                             "in prometheus.yml's rule_files?" % '; '.join(problems))
        return loaded


def _groups_text(groups):
    return ', '.join('%s (%d rules)' % (name, count) for name, count in sorted(groups)) or 'no groups'


# ---------------------------------------------------------------------------- one deployment

class _Lock(object):
    """An exclusive flock on the rules directory itself: two deployments never interleave."""

    def __init__(self, rules_dir):
        self.path = rules_dir
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def plan(rules_dir, files, mode=0o644, uid=-1, gid=-1, exclusive=False, parse=True):
    """What a deployment of ``files`` ({name: text}) would change in ``rules_dir``."""
    for name in files:
        if not _NAME.match(name) or not name.endswith(RULE_SUFFIXES):
            raise RulesError('rule file name %r: a plain file name ending in .yml or .yaml is expected' % name)
    owned = read_manifest(rules_dir)
    present = _rule_file_names(rules_dir)
    managed = set(present) if exclusive else set(owned) & set(present)
    current = {name: _snapshot(os.path.join(rules_dir, name)) for name in set(files) | managed}
    added, changed, attributes = [], [], []
    for name, text in sorted(files.items()):
        snap = current.get(name)
        if snap is None:
            added.append(name)
        elif snap[0] != text.encode('utf-8'):
            changed.append(name)
        elif snap[1] != mode or (uid != -1 and snap[2] != uid) or (gid != -1 and snap[3] != gid):
            attributes.append(name)
    removed = sorted(managed - set(files))
    before = {n: current[n][0].decode('utf-8', 'replace') for n in changed + removed if current.get(n)}
    after = {n: files[n] for n in added + changed}
    rules_added, rules_changed, rules_removed = rule_changes(before, after) if parse else ([], [], [])
    manifest = {name: _sha256(text.encode('utf-8')) for name, text in files.items()}
    return dict(added=added, changed=changed, attributes=attributes, removed=removed, current=current,
                manifest_changed=manifest != owned, manifest=manifest,
                rules_added=rules_added, rules_changed=rules_changed, rules_removed=rules_removed)


def _diff(rules_dir, files, planned):
    out = []
    for name in planned['added'] + planned['changed'] + planned['removed']:
        snap = planned['current'].get(name)
        out.append(dict(before_header=os.path.join(rules_dir, name) if snap else '/dev/null',
                        after_header=os.path.join(rules_dir, name) if name in files else '/dev/null',
                        before=snap[0].decode('utf-8', 'replace') if snap else '',
                        after=files.get(name, '')))
    return out


def _apply(rules_dir, files, planned, mode, uid, gid):
    for name in planned['added'] + planned['changed'] + planned['attributes']:
        write_atomically(os.path.join(rules_dir, name), files[name].encode('utf-8'), mode, uid, gid)
    for name in planned['removed']:
        os.unlink(os.path.join(rules_dir, name))
    _write_manifest(rules_dir, planned['manifest'])


def _write_manifest(rules_dir, manifest):
    text = json.dumps({'managed_by': 'cerniq.ops.prometheus_rules', 'files': manifest}, indent=2, sort_keys=True)
    write_atomically(os.path.join(rules_dir, MANIFEST), (text + '\n').encode('utf-8'), 0o644)


def _restore(rules_dir, planned, previous_manifest):
    """Put back the bytes and modes of every file the deployment touched, and the old manifest."""
    for name in planned['added'] + planned['changed'] + planned['attributes'] + planned['removed']:
        path = os.path.join(rules_dir, name)
        snap = planned['current'].get(name)
        if snap is None:
            if os.path.exists(path):
                os.unlink(path)
        else:
            data, mode, uid, gid = snap
            write_atomically(path, data, mode, uid if os.geteuid() == 0 else -1, gid if os.geteuid() == 0 else -1)
    if previous_manifest is None:
        manifest = os.path.join(rules_dir, MANIFEST)
        if os.path.exists(manifest):
            os.unlink(manifest)
    else:
        _write_manifest(rules_dir, previous_manifest)


def deploy(rules_dir, files, tests=None, promtool='promtool', lint_fatal=True, exclusive=False, mode=0o644,
           uid=-1, gid=-1, prometheus=None, check_mode=False):
    """Deploy ``files`` ({name: text}) into ``rules_dir`` as one unit (see the module docstring).

    ``prometheus`` is a Prometheus (reload + verify) or None (write only). ``promtool`` None skips the
    validation (the module allows that in check mode only, on a host without promtool yet); without
    PyYAML check mode reports file-level changes only. Returns a result dict;
    raises RulesError (with ``details``) when nothing was changed or everything was rolled back.
    """
    parse = check_requirements(check_mode)
    tests = tests or {}
    if not os.path.isabs(rules_dir):
        raise RulesError('rules_dir must be an absolute path: %s' % rules_dir)
    paths = {os.path.join(rules_dir, n): groups_of(n, t) if parse else [] for n, t in files.items()}
    planned = plan(rules_dir, files, mode, uid, gid, exclusive, parse)
    tests_run = validate(files, tests if parse else {}, promtool, lint_fatal) if promtool else []
    gone = [os.path.join(rules_dir, n) for n in planned['removed']]
    changed = bool(planned['added'] or planned['changed'] or planned['attributes'] or planned['removed'])
    result = dict(changed=changed or planned['manifest_changed'], reloaded=False,
                  files_added=planned['added'], files_changed=sorted(planned['changed'] + planned['attributes']),
                  files_removed=planned['removed'], rules_added=planned['rules_added'],
                  rules_changed=planned['rules_changed'], rules_removed=planned['rules_removed'],
                  tests_run=tests_run, diff=_diff(rules_dir, files, planned),
                  groups=[dict(file=os.path.basename(p), group=g, rules=c)
                          for p in sorted(paths) for g, c in paths[p]])
    if check_mode:
        return result
    if prometheus is not None:
        prometheus.reload_status()  # answers, and is a Prometheus: checked before anything is written
    if not os.path.isdir(rules_dir):
        os.makedirs(rules_dir, 0o755)
        result['changed'] = True
    with _Lock(rules_dir):
        if not changed:
            if planned['manifest_changed']:
                _write_manifest(rules_dir, planned['manifest'])
            if prometheus is not None:
                try:
                    prometheus.verify(paths, gone)
                except RulesError:
                    # The files on disk are right but not what Prometheus runs: load them.
                    prometheus.reload()
                    prometheus.verify(paths, gone)
                    result.update(changed=True, reloaded=True)
            return result
        previous_manifest = read_manifest(rules_dir) if os.path.exists(os.path.join(rules_dir, MANIFEST)) else None
        try:
            _apply(rules_dir, files, planned, mode, uid, gid)
            if prometheus is not None:
                prometheus.reload()
                result['reloaded'] = True
                prometheus.verify(paths, gone)
        except (RulesError, OSError) as error:
            reason = error_line(error) if isinstance(error, OSError) else str(error)
            _restore(rules_dir, planned, previous_manifest)
            rollback = 'the previous rule files are back on disk'
            if prometheus is not None:
                try:
                    prometheus.reload()
                    rollback += ' and Prometheus reloaded them'
                except RulesError as again:
                    rollback += ', but reloading them failed too: %s' % again
            raise RulesError('%s; rolled back: %s' % (reason, rollback), rolled_back=True,
                             **{k: v for k, v in result.items() if k != 'diff'})
    return result
