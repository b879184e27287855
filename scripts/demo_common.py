"""What both demos share: announced stages, per-stage logs, playbook runs, Markdown tables.

Each stage prints ``==> [n/N] title``; every command a stage runs writes its whole output
to ``<state dir>/logs/NN-name.log``, and a failure names the stage and that log.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from cerniq_testkit.ansible_run import collections_root  # noqa: E402

VENV_BIN = os.path.dirname(sys.executable)
BOLD, RESET = ('\033[1m', '\033[0m') if sys.stdout.isatty() else ('', '')


# What the daily maintenance (runbook 3.1) purges and archives: promoted bronze contacts older
# than 30 days and enrichment log rows older than 90 days.
RETENTION_SQL = (
    "SELECT (SELECT count(*) FROM bronze_contacts WHERE processing_status = 'promoted' "
    "AND created_at < now() - interval '30 days') "
    "+ (SELECT count(*) FROM silver_enrichment_log WHERE created_at < now() - interval '90 days')")


class StageFailed(Exception):
    pass


class Stages:
    """Numbered, announced stages with a log file per command."""

    def __init__(self, state_dir, total):
        self.state_dir = state_dir
        self.logs = os.path.join(state_dir, 'logs')
        self.total = total
        self.number = 0
        self.current = 'starting'
        os.makedirs(self.logs, exist_ok=True)

    def stage(self, title):
        self.number += 1
        self.current = title
        print('\n%s==> [%d/%d] %s%s' % (BOLD, self.number, self.total, title, RESET), flush=True)

    def log_path(self, name):
        return os.path.join(self.logs, '%02d-%s.log' % (self.number, name))

    def command(self, name, cmd, env=None, show=None, what=None):
        """Run ``cmd``, its output into a log; lines for which ``show(line)`` is true are printed."""
        log = self.log_path(name)
        with open(log, 'w') as handle:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=dict(os.environ, **(env or {})), cwd=REPO)
            for line in proc.stdout:
                handle.write(line)
                handle.flush()
                if show is not None and show(line):
                    sys.stdout.write('    ' + line)
                    sys.stdout.flush()
            proc.wait()
        if proc.returncode != 0:
            raise StageFailed('%s failed (exit %d); log: %s' % (what or ' '.join(cmd[:2]), proc.returncode, log))
        return log


def run_demo(demo):
    """Run ``demo.run()``; a failed stage names itself and its log. Returns the exit code."""
    try:
        demo.run()
    except StageFailed as error:
        print('\ndemo FAILED at stage %d (%s): %s' % (demo.stages.number, demo.stages.current, error),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ndemo interrupted at stage %d (%s)' % (demo.stages.number, demo.stages.current), file=sys.stderr)
        return 130
    finally:
        getattr(demo, 'stop', lambda: None)()
    return 0


def playbook_command(inventory, path, extra_vars=None, vars_file=None):
    cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', inventory]
    if vars_file:
        cmd += ['-e', '@' + vars_file]
    cmd.append(os.path.join(REPO, path))
    for key, value in (extra_vars or {}).items():
        cmd += ['-e', json.dumps({key: value})]
    return cmd


def playbook_env(**extra):
    env = dict(ANSIBLE_COLLECTIONS_PATH=collections_root(), ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='False',
               ANSIBLE_DISPLAY_SKIPPED_HOSTS='False', ANSIBLE_CALLBACK_RESULT_FORMAT='yaml',
               ANSIBLE_DEPRECATION_WARNINGS='False')
    env.update(extra)
    return env


def every_line(_line):
    return True


def markdown_table(headers, rows):
    """A Markdown table, columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(cells[0], widths)) + ' |',
             '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    for row in cells[1:]:
        lines.append('| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |')
    return '\n'.join(lines)
