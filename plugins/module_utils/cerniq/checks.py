# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option checks of the CERNIQ procedure engines (approvals, imports, quality scores).

Every value a procedure sends to PostgreSQL or to the CERNIQ API is checked here first, before a
connection is opened, so bad input ends with one line naming the option and what it allows:
integers and floats within bounds, UUIDs, texts without NUL bytes, table names, API URLs.
``require_tables`` then checks, once connected and before anything is read or changed, that every
table the procedure needs exists, naming the missing one and its option.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import uuid
from urllib.parse import urlsplit

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option
from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import HAS_PSYCOPG2, psycopg2
from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import relation

# One year: the longest window, threshold or interval a procedure accepts, in seconds.
MAX_SECONDS = 365 * 86400
MAX_MINUTES = MAX_SECONDS // 60
# The largest per-run limit (max_tasks, max_count, max_companies).
MAX_LIMIT = 1000000
MAX_TEXT = 1000

# psycopg2's errors, for a module's ``except``: an empty tuple (catches nothing) without psycopg2.
DATABASE_ERRORS = (psycopg2.Error,) if HAS_PSYCOPG2 else ()


class CerniqError(EngineError):
    """Bad input or a missing table: the message is one line naming the option."""


def check_int(name, value, minimum, maximum, optional=False):
    """``value`` within ``[minimum, maximum]``; ``None`` only when ``optional`` (meaning: no limit)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        hint = ' (leave it unset for no limit)' if optional else ''
        raise CerniqError('%s must be an integer between %d and %d%s, got %r' % (name, minimum, maximum, hint, value))
    return value


def check_duration(name, value, minimum, maximum, optional=False):
    """Seconds of a duration with a unit (``'30m'``) within ``[minimum, maximum]`` seconds; ``None`` only when
    ``optional`` (meaning: no limit)."""
    try:
        return duration_option(value, name, minimum, maximum, optional=optional)
    except DurationError as error:
        raise CerniqError(str(error))


def check_fraction(name, value):
    """A float in ``(0, 1]`` (NaN and infinities refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0 < value <= 1:
        raise CerniqError('%s must be a number greater than 0 and at most 1, got %r' % (name, value))
    return float(value)


def check_text(name, value, optional=False, max_length=MAX_TEXT):
    """A non-blank text of at most ``max_length`` characters without NUL bytes (PostgreSQL refuses them)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CerniqError('%s must not be empty' % name)
    if '\x00' in value:
        raise CerniqError('%s must not contain NUL bytes' % name)
    if len(value) > max_length:
        raise CerniqError('%s must be at most %d characters, got %d' % (name, max_length, len(value)))
    return value


def check_texts(name, values, optional=False, allow_empty=False):
    """A list of texts (see ``check_text``); ``None`` only when ``optional``."""
    if values is None and optional:
        return None
    if not isinstance(values, list) or (not values and not allow_empty):
        raise CerniqError('%s must be a non-empty list' % name)
    return [check_text('%s[%d]' % (name, index), value) for index, value in enumerate(values)]


def check_uuid(name, value, optional=False):
    """A UUID as text, normalised; ``None`` only when ``optional`` (an empty text is refused)."""
    if value is None and optional:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise CerniqError('%s must be a UUID, got %r' % (name, value))


def check_uuids(name, values, optional=False):
    if values is None and optional:
        return None
    if not isinstance(values, list):
        raise CerniqError('%s must be a list of UUIDs' % name)
    return [check_uuid('%s[%d]' % (name, index), value) for index, value in enumerate(values)]


def check_relation(name, value):
    """A ``[schema.]table`` name, quoted for SQL."""
    return relation(name, value, CerniqError)


def check_api(params):
    """``api_url`` (http or https with a host) and ``api_token`` (one line) for a call, ``timeout`` (1s to 1h)."""
    url = check_text('api_url', params.get('api_url'))
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as error:
        raise CerniqError('api_url %r is not a URL: %s' % (url, error))
    if parts.scheme not in ('http', 'https') or not host or port == 0 or any(c.isspace() for c in url):
        raise CerniqError('api_url must be an http:// or https:// URL with a host, got %r' % (url,))
    token = check_text('api_token', params.get('api_token'), max_length=8192)
    if any(c in token for c in '\r\n'):
        raise CerniqError('api_token must be one line')
    check_duration('timeout', params.get('timeout'), 1, 3600)
    return url


def require_tables(conn, tables):
    """Fail with one line naming the first missing table of ``{option: quoted name}``, before any change."""
    with conn.cursor() as cur:
        for option, name in tables.items():
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            if not cur.fetchone()[0]:
                if not conn.autocommit:
                    conn.rollback()
                raise CerniqError('table %s (%s) does not exist' % (name, option))
    if not conn.autocommit:
        conn.rollback()


def database_error(error):
    """One line for a PostgreSQL error (a missing column, a constraint, a lock timeout)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return 'PostgreSQL error: %s' % (lines[0] if lines else error.__class__.__name__)
