"""Time a module the way users run it: ``ansible-playbook`` on localhost, paired with a baseline.

Shared by the benchmarks in this directory (import it after putting the repository on
``sys.path``: ``from benchmarks.playbook_timing import ...``)::

    bench = PairedBenchmark(runs=3)
    bench.add('runbook', run_runbook, prepare=load_data, baseline=True)
    bench.add_module('module', 'redis_keys', dict(patterns=['cache:*']), prepare=load_data)
    bench.run()
    bench.print_report()

* A module is run through the venv's ``ansible-playbook`` (``cerniq_testkit.ansible_run.run_playbook``:
  localhost, local connection, the repository seen as ``ansible_collections/cerniq/ops``) with a
  generated one-task playbook holding the given module arguments, with ``-v`` so the task's result
  can be read back from the default callback's output.
* Start-up is measured in the same run: the same play whose only task is ``ansible.builtin.meta:
  noop`` (Ansible's start-up, inventory and play; no module process), run right before every module
  playbook, after that run's ``prepare``. A module's time is its playbook's wall time minus the
  start-up measured just before it (``start-up s``), so it still includes what a module costs every
  user (AnsiballZ, its Python process, imports, connecting). Start-up is reported on its own row
  (every no-op run). Start-up still varies from one playbook to the next (seconds on a busy machine):
  compare a module's time with its own ``engine s`` and ``module process s``.
* Each round runs every method once (after its untimed ``prepare``), in alternating order (forward
  in even rounds, backward in odd ones), so slow drift of a shared machine hits both sides alike.
* Ratios are paired: per round, baseline seconds / method seconds; the table shows the median of
  those ratios and their range. Seconds are medians with their range.
* A method returns a ``Sample`` (seconds plus named extra figures: worst PING, RSS, ...); the table
  shows each extra as ``median (worst)``, where worst is the highest value over the rounds.
* ``rss=True`` on a module watches its process (``AnsiballZ_<module>``) every 20 ms: the extras
  ``module RSS MB`` (peak) and ``module process s`` (from its start to its end: the module as it
  runs on the host - Python start-up, imports, connecting, the work - without Ansible's own
  start-up; steadier than the subtraction on a busy machine), with a second paired ratio on it.
* ``PairedBenchmark(autogroup_nice=-10)`` (root, Linux with autogroups - one CPU share per
  session, whatever the number of processes in it) raises the CPU share of this process's
  session, and of each module process's session (Ansible starts modules in a session of their
  own) as soon as it is seen: an approximation of a quiet machine on a shared one. Servers the
  benchmark starts (their own sessions too) are raised with ``prioritize(pid, nice)``. Say so
  when you report such figures.
"""

import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from cerniq_testkit.ansible_run import run_playbook  # noqa: E402

STARTUP = 'start-up (no-op playbook)'
_RESULT_LINE = re.compile(r'^(?:ok|changed|fatal): \[[^\]]+\](?:: FAILED!)? => ', re.MULTILINE)


class Sample(object):
    """One measured run: ``seconds`` and named extra figures (numbers)."""

    def __init__(self, seconds, result=None, **extras):
        self.seconds = seconds
        self.result = result
        self.extras = extras


def machine_line():
    """CPUs and load averages: the benchmarks run on a shared machine, so say how busy it was."""
    one, five, fifteen = os.getloadavg()
    return '%d CPUs, load average %.1f / %.1f / %.1f (1 / 5 / 15 min)' % (os.cpu_count(), one, five, fifteen)


def task_result(output):
    """The result dict of the first task printed by the default callback with ``-v`` (None if absent)."""
    found = _RESULT_LINE.search(output)
    if not found:
        return None
    try:
        return json.JSONDecoder().raw_decode(output[found.end():])[0]
    except ValueError:
        return None


def write_playbook(directory, name, task):
    """A one-play, one-task playbook on localhost (JSON is YAML); returns its path."""
    play = [dict(name='benchmark %s' % name, hosts='localhost', gather_facts=False,
                 tasks=[dict(task, name=name)])]
    path = os.path.join(directory, '%s.yml' % re.sub(r'[^A-Za-z0-9_]+', '_', name))
    with open(path, 'w') as handle:
        json.dump(play, handle, indent=2)
    return path


def prioritize(pid, nice):
    """Set the nice value of ``pid``'s autogroup (its session's CPU share); returns the previous one."""
    path = '/proc/%d/autogroup' % pid
    with open(path) as handle:
        previous = int(handle.read().split()[-1])
    with open(path, 'w') as handle:
        handle.write(str(nice))
    return previous


def _watch(thread, process_marker, nice=None):
    """Wait for ``thread``; meanwhile watch our descendant running ``<process_marker>.py``.

    Returns (peak RSS bytes, seconds the process lived - from its start to when it was seen gone,
    within 20 ms). ``nice``: also give that process's autogroup this nice value when it is found.
    """
    import psutil
    me = psutil.Process()
    target, peak, started, lived = None, 0, None, 0.0
    while thread.is_alive():
        try:
            if target is None:
                for child in me.children(recursive=True):
                    # The Python process running the module, not the shell that starts it.
                    if any(os.path.basename(part) == process_marker + '.py' for part in child.cmdline()):
                        target, started = child, child.create_time()
                        if nice is not None:
                            prioritize(child.pid, nice)
                        break
            if target is not None:
                peak = max(peak, target.memory_info().rss)
                lived = time.time() - started
        except psutil.Error:
            target = None  # ended (or not readable yet); look again
        thread.join(0.02)
    return peak, lived


def time_playbook(playbook, check=False, env=None, process_marker=None, nice=None):
    """Run ``playbook`` with ``-v``; returns (wall seconds, task result or None, output, peak RSS bytes,
    seconds the module process lived).

    ``process_marker`` (``AnsiballZ_<module>``): watch that process (``nice``: its autogroup's nice value).
    """
    box = {}

    def run():
        started = time.perf_counter()
        box['proc'] = run_playbook(playbook, check=check, env=env, extra_args=['-v'])
        box['wall'] = time.perf_counter() - started

    thread = threading.Thread(target=run)
    thread.start()
    peak, lived = _watch(thread, process_marker, nice) if process_marker else (0, 0.0)
    thread.join()
    proc = box['proc']
    return box['wall'], task_result(proc.stdout), proc, peak, lived


class Method(object):
    def __init__(self, label, run, prepare=None, baseline=False, playbook=False, ratio=True):
        self.label, self.run, self.prepare = label, run, prepare
        self.baseline, self.playbook, self.ratio = baseline, playbook, ratio
        self.samples = []


class PairedBenchmark(object):
    """Methods measured in the same rounds, alternating order; medians and paired ratios."""

    def __init__(self, runs=3, verbose=True, autogroup_nice=None):
        self.runs = runs
        self.verbose = verbose
        self.autogroup_nice = autogroup_nice
        self.methods = []
        self.startup = None
        self.scratch = tempfile.mkdtemp(prefix='cerniq-bench-playbooks-')
        self.load = []

    def add(self, label, run, prepare=None, baseline=False, ratio=True):
        """``run()`` returns a Sample or seconds; ``prepare()`` (untimed) runs before each measurement.

        ``ratio=False``: a reference row (an idle period, say) shown without a ratio to the baseline.
        """
        method = Method(label, run, prepare, baseline, ratio=ratio)
        self.methods.append(method)
        return method

    def add_module(self, label, module, args, prepare=None, check=False, env=None, rss=False, accept=None,
                   baseline=False, figures=None):
        """``cerniq.ops.<module>`` (or a fully qualified name) with ``args`` through ansible-playbook.

        Its time is the playbook's wall time minus the no-op playbook's run right before it.
        ``accept(result)`` may raise when the result is wrong; by default a failed task raises.
        Extras: the module's own ``elapsed`` (engine seconds) when it returns one, peak RSS with ``rss``,
        and whatever ``figures(result)`` returns (a dict of named numbers: checks made after the run, say).
        """
        noop = write_playbook(self.scratch, 'noop', {'ansible.builtin.meta': 'noop'})
        if self.startup is None:
            self.startup = Method(STARTUP, None)  # its samples: every no-op run, made by the module methods
        fqcn = module if '.' in module else 'cerniq.ops.%s' % module
        playbook = write_playbook(self.scratch, label, {fqcn: args})
        marker = 'AnsiballZ_%s' % fqcn.rsplit('.', 1)[-1] if rss or self.autogroup_nice is not None else None

        def run():
            startup = time_playbook(noop)[0]
            self.startup.samples.append(Sample(startup))
            wall, result, proc, peak, lived = time_playbook(playbook, check=check, env=env, process_marker=marker,
                                                            nice=self.autogroup_nice)
            if accept is not None:
                accept(result)
            elif result is None or result.get('failed') or proc.returncode != 0:
                raise RuntimeError('%s failed:\n%s' % (label, proc.stdout[-3000:]))
            extras = {'start-up s': startup}
            if isinstance(result.get('elapsed_seconds'), (int, float)):
                extras['engine s'] = result['elapsed_seconds']
            if rss:
                extras['module RSS MB'] = peak / 1e6
                extras['module process s'] = lived
            if figures is not None:
                extras.update(figures(result))
            return Sample(wall, result, **extras)

        method = Method(label, run, prepare, baseline, playbook=True)
        self.methods.append(method)
        return method

    def run(self):
        previous = None if self.autogroup_nice is None else prioritize(os.getpid(), self.autogroup_nice)
        try:
            self._rounds()
        finally:
            if previous is not None:
                prioritize(os.getpid(), previous)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _rounds(self):
        for index in range(self.runs):
            order = self.methods if index % 2 == 0 else list(reversed(self.methods))
            self.load.append(os.getloadavg()[0])
            for method in order:
                if method.prepare is not None:
                    method.prepare()
                sample = method.run()
                if not isinstance(sample, Sample):
                    sample = Sample(sample)
                method.samples.append(sample)
                if self.verbose:
                    print('  round %d/%d  %-44s %7.2f s  %s' % (
                        index + 1, self.runs, method.label, sample.seconds,
                        '  '.join('%s %.2f' % item for item in sorted(sample.extras.items()))), flush=True)
        self.load.append(os.getloadavg()[0])

    def seconds(self, method):
        """Per run: a playbook's wall time minus the start-up measured right before it; others as measured."""
        if not method.playbook:
            return [sample.seconds for sample in method.samples]
        return [sample.seconds - sample.extras['start-up s'] for sample in method.samples]

    def ratios(self, method, extra=None):
        """Per round: baseline seconds / this method's seconds (or its ``extra`` figure)."""
        baseline = next((m for m in self.methods if m.baseline), None)
        if baseline is None or baseline is method or method is self.startup or not method.ratio:
            return None
        own = self.seconds(method) if extra is None else [sample.extras.get(extra) for sample in method.samples]
        if None in own:
            return None
        # A module faster than the start-up's noise has no meaningful ratio: left out.
        return [base / value for base, value in zip(self.seconds(baseline), own) if value > 0]

    def rows(self):
        extras = []
        methods = ([self.startup] if self.startup is not None else []) + self.methods
        for method in methods:
            for sample in method.samples:
                extras.extend(name for name in sorted(sample.extras) if name not in extras)
        header = ['method', 'seconds: median (range)', 'paired ratio to baseline: median (range)',
                  'ratio on module process s'] + ['%s: median (worst)' % name for name in extras]
        rows = []
        for method in methods:
            seconds = self.seconds(method)
            ratios = self.ratios(method)
            process_ratios = self.ratios(method, 'module process s') if method.playbook else None
            row = [method.label + (' (baseline)' if method.baseline else ''), _median_range(seconds, '%.2f'),
                   _median_range(ratios, '%.2fx') if ratios else ('n/a' if ratios is not None else ''),
                   _median_range(process_ratios, '%.2fx') if process_ratios else '']
            for name in extras:
                values = [sample.extras[name] for sample in method.samples if name in sample.extras]
                row.append('%.2f (%.2f)' % (statistics.median(values), max(values)) if values else '')
            rows.append(row)
        return header, rows

    def print_report(self, title=None):
        if title:
            print('\n' + title)
        print('%d rounds, alternating order; load average (1 min) at each round start: %s%s' % (
            self.runs, ', '.join('%.1f' % value for value in self.load),
            '' if self.autogroup_nice is None else '; autogroup nice %d' % self.autogroup_nice))
        header, rows = self.rows()
        print(format_table(header, rows))


def _median_range(values, fmt):
    return (fmt + ' (' + fmt + ' - ' + fmt + ')') % (statistics.median(values), min(values), max(values))


def format_table(header, rows):
    """A Markdown table with aligned columns (readable in a terminal, pasteable into docs)."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]

    def line(cells):
        return '| ' + ' | '.join(str(cell).ljust(width) for cell, width in zip(cells, widths)) + ' |'

    return '\n'.join([line(header), '|' + '|'.join('-' * (width + 2) for width in widths) + '|']
                     + [line(row) for row in rows])


def main():
    """Self-check: start-up, a trivial module and a 0.5 s sleep as the baseline, three rounds."""
    bench = PairedBenchmark(runs=3)
    bench.add('sleep 0.5 s', lambda: Sample(_sleep(0.5)), baseline=True)
    bench.add_module('ansible.builtin.ping', 'ansible.builtin.ping', dict(data='pong'), rss=True)
    print(machine_line())
    bench.run()
    bench.print_report('playbook_timing self-check')


def _sleep(seconds):
    started = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - started


if __name__ == '__main__':
    main()
