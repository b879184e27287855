# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write node_exporter textfile-collector metrics atomically.

node_exporter reads every ``*.prom`` file of its textfile directory on each
scrape; a half-written file would be scraped as garbage, so the file is written
to a temporary name in the same directory (``.prom.tmp`` is ignored by the
collector) and renamed over the old one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile

_METRIC_NAME = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
_LABEL_NAME = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')


def _escape(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def _format_value(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(metrics):
    """Exposition text for ``[(name, help, type, labels_dict, value), ...]``.

    Samples of one metric name must be adjacent; HELP/TYPE are written once per name.
    """
    lines = []
    seen = set()
    for name, help_text, metric_type, labels, value in metrics:
        if not _METRIC_NAME.match(name):
            raise ValueError('invalid metric name %r' % name)
        if name not in seen:
            lines.append('# HELP %s %s' % (name, help_text.replace('\n', ' ')))
            lines.append('# TYPE %s %s' % (name, metric_type))
            seen.add(name)
        label_text = ''
        if labels:
            for key in labels:
                if not _LABEL_NAME.match(key):
                    raise ValueError('invalid label name %r' % key)
            label_text = '{%s}' % ','.join('%s="%s"' % (key, _escape(labels[key])) for key in sorted(labels))
        lines.append('%s%s %s' % (name, label_text, _format_value(value)))
    return '\n'.join(lines) + '\n'


def write_atomically(path, text, mode=0o644):
    """Write ``text`` to ``path`` through a temp file in the same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_metrics(path, metrics, mode=0o644):
    """Render and write metrics atomically; returns the text written."""
    text = render(metrics)
    write_atomically(path, text, mode)
    return text


def read_sample(path, name):
    """The value of the first sample of ``name`` in an existing .prom file, or None."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(name + ' ') or line.startswith(name + '{'):
                    return float(line.rsplit(' ', 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
