"""The demos' stage runner: every stage is announced, every command logs to its own file,
and a failing command stops the demo with the stage and the log to read."""

import os
import sys

from cerniq_testkit.ansible_run import REPO

sys.path.insert(0, os.path.join(REPO, 'scripts'))

import demo_common  # noqa: E402


class TwoStageDemo:
    def __init__(self, state_dir, fail):
        self.stages = demo_common.Stages(str(state_dir), 2)
        self.fail = fail
        self.stopped = False

    def run(self):
        self.stages.stage('First stage')
        self.stages.command('first', [sys.executable, '-c', 'print("first ok")'], show=demo_common.every_line)
        self.stages.stage('Second stage')
        code = 'import sys; print("about to fail"); sys.exit(3)' if self.fail else 'print("second ok")'
        self.stages.command('second', [sys.executable, '-c', code], what='the second command')

    def stop(self):
        self.stopped = True


def test_stages_are_announced_and_logged(tmp_path, capsys):
    demo = TwoStageDemo(tmp_path, fail=False)
    assert demo_common.run_demo(demo) == 0
    out = capsys.readouterr().out
    assert '==> [1/2] First stage' in out and '==> [2/2] Second stage' in out
    assert '    first ok' in out and 'second ok' not in out  # only what `show` lets through is printed
    assert (tmp_path / 'logs' / '01-first.log').read_text() == 'first ok\n'
    assert (tmp_path / 'logs' / '02-second.log').read_text() == 'second ok\n'
    assert demo.stopped


def test_a_failure_names_the_stage_and_its_log(tmp_path, capsys):
    demo = TwoStageDemo(tmp_path, fail=True)
    assert demo_common.run_demo(demo) == 1
    err = capsys.readouterr().err
    log = tmp_path / 'logs' / '02-second.log'
    assert 'demo FAILED at stage 2 (Second stage): the second command failed (exit 3); log: %s' % log in err
    assert log.read_text() == 'about to fail\n'
    assert demo.stopped  # servers and stand-ins are stopped on failure too


def test_markdown_table_pads_columns():
    table = demo_common.markdown_table(['what', 'n'], [('stalled jobs', 11), ('x', 0)])
    assert table.splitlines() == ['| what         | n  |', '|--------------|----|',
                                  '| stalled jobs | 11 |', '| x            | 0  |']
