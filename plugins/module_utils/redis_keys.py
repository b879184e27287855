# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delete (or count) Redis keys matching glob patterns, safely, on a live server.

Plain Python (no Ansible import): the ``cerniq.ops.redis_keys`` module, the
scheduled maintenance job, the benchmark and the tests all call ``delete_keys``
/ ``count_keys`` here.

How it works, per master node (one node for a single server; every primary of
a Redis Cluster): one Lua call per page (``PAGE_SCRIPT``) runs
``SCAN cursor MATCH pattern COUNT scan_count [TYPE key_type]``, checks the
filters (``TTL`` == -1, ``OBJECT IDLETIME`` >= N) and ``UNLINK``s the keys that
passed, then returns the next cursor and counts.

* Filters are checked and the key removed in the same atomic call, so a key a
  client touches in between is never deleted.
* Each call handles one page (``scan_count`` slots, about 1.5 ms of server CPU
  at the default 1000), so other clients never wait long. Nothing accumulates
  in the client: memory stays flat whatever the number of keys.
* On a cluster the script carries ``allow-cross-slot-keys`` (Redis 7.0+) and
  unlinks key by key, since one page holds keys of many hash slots.
* ``max_keys`` is a guard: the run is refused before anything is deleted when
  more keys match. When the databases hold no more than ``max_keys`` keys in
  all (``DBSIZE``), nothing needs counting: one delete pass runs, never
  removing more than ``max_keys`` keys even if keys appear meanwhile. Otherwise
  one counting pass (SCAN with the filters, deleting nothing) stops as soon as
  too many keys match, and keeps the names of those that match aside, encoded
  by the server as RESP, in a spooled temporary file (memory flat; unnamed
  file on disk past 8 MB); the delete pass sends them back as they are (plain
  ``UNLINK``, or ``PAGE_SCRIPT`` when filters must be checked again) instead of
  scanning the keyspace a second time. Measured (benchmarks/redis_keys.py, 1M
  of 2M keys): a second SCAN + UNLINK pass cost about as much server CPU as the
  whole unguarded run, the kept names about 40% of it.
* Check mode (``dry_run``) runs the counting pass only and returns a sample.

Key names are bytes end to end (any byte, spaces, quotes, newlines, ``*``);
samples are decoded with ``backslashreplace`` for display only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import struct
import tempfile
import time

from ansible_collections.cerniq.ops.plugins.module_utils.durations import DurationError, duration_option
from ansible_collections.cerniq.ops.plugins.module_utils.errors import EngineError

DEFAULT_SCAN_COUNT = 1000
DEFAULT_BATCH_SIZE = 1000
DEFAULT_SAMPLE_SIZE = 10
MAX_SAMPLE_SIZE = 1000
MAX_SCAN_COUNT = 100000
MAX_BATCH_SIZE = 5000  # keys unpacked into one UNLINK inside Lua (its C stack holds 8000)
MAX_IDLE_SECONDS = 10 * 365 * 86400
KEY_TYPES = ('string', 'list', 'set', 'zset', 'hash', 'stream')

# The options saying which keys a run works on, shared by the redis_keys and redis_keys_info modules
# (documented once in the cerniq.ops.redis_key_filters doc fragment).
KEY_FILTER_ARGUMENT_SPEC = dict(
    patterns=dict(type='list', elements='str', required=True),
    allow_all=dict(type='bool', default=False),
    key_type=dict(type='str', choices=list(KEY_TYPES)),
    no_ttl_only=dict(type='bool', default=False),
    min_idle_time=dict(type='str'),
    scan_count=dict(type='int', default=DEFAULT_SCAN_COUNT),
    sample_size=dict(type='int', default=DEFAULT_SAMPLE_SIZE),
)

# One server call: take a batch of keys, check the filters, UNLINK what passed (or just count
# it), atomically, so a key touched after the check is never removed. The batch is either the
# next SCAN page (source 'scan') or key names an earlier counting pass kept aside (source
# 'names', given as the last arguments), so each call handles one page's worth of keys and
# other clients wait at most that long.
# ARGV: 1 source ('scan' | 'names'), 2 cursor, 3 pattern, 4 scan count, 5 key type or '',
#       6 apply (0|1), 7 no TTL only (0|1), 8 minimum idle seconds or -1, 9 most keys to delete
#       or -1, 10 key names to return (-1 = all that passed), 11 UNLINK batch size (1 = one key
#       per call, as a cluster needs: keys of one page sit in many hash slots), 12 return the
#       names that passed encoded as RESP bulk strings (0|1), 13... key names (source 'names').
# Returns {next cursor, keys looked at, keys that passed, keys deleted, names, encoded names}.
PAGE_SCRIPT = """
local cursor, keys = '0', {}
local key_type = ARGV[5]
if ARGV[1] == 'scan' then
  local scan = {'SCAN', ARGV[2], 'MATCH', ARGV[3], 'COUNT', ARGV[4]}
  if key_type ~= '' then
    scan[7] = 'TYPE'
    scan[8] = key_type
    key_type = ''  -- SCAN checked it
  end
  local reply = redis.call(unpack(scan))
  cursor, keys = reply[1], reply[2]
else
  for i = 13, #ARGV do
    keys[#keys + 1] = ARGV[i]
  end
end
local no_ttl = ARGV[7] == '1'
local idle = tonumber(ARGV[8])
local passed = keys
if key_type ~= '' or no_ttl or idle >= 0 then
  passed = {}
  for _, key in ipairs(keys) do
    local ok = true
    if key_type ~= '' then
      ok = redis.call('TYPE', key)['ok'] == key_type
    end
    if ok and no_ttl then
      ok = redis.call('TTL', key) == -1
    end
    if ok and idle >= 0 then
      local seconds = redis.call('OBJECT', 'IDLETIME', key)
      ok = seconds ~= false and seconds >= idle
    end
    if ok then
      passed[#passed + 1] = key
    end
  end
end
local todo = #passed
local limit = tonumber(ARGV[9])
if limit >= 0 and todo > limit then
  todo = limit
end
local deleted = 0
if ARGV[6] == '1' and todo > 0 then
  local batch = tonumber(ARGV[11])
  for i = 1, todo, batch do
    deleted = deleted + redis.call('UNLINK', unpack(passed, i, math.min(i + batch - 1, todo)))
  end
end
local want = tonumber(ARGV[10])
if want < 0 or want > #passed then
  want = #passed
end
local names = {}
for i = 1, want do
  names[i] = passed[i]
end
local encoded = {}
if ARGV[12] == '1' then
  for i, key in ipairs(passed) do
    encoded[i] = '$' .. #key .. '\\r\\n' .. key .. '\\r\\n'
  end
end
return {cursor, #keys, #passed, deleted, names, table.concat(encoded)}
"""

# On a cluster the keys of one page belong to many hash slots: the script must say so
# (Redis 7.0+). allow-oom: deleting keys must still work when the server is full.
CLUSTER_PAGE_SCRIPT = '#!lua flags=allow-cross-slot-keys,allow-oom\n' + PAGE_SCRIPT

# Names kept aside by the guard's counting pass: in memory up to this size, then in an
# unnamed temporary file (removed when the run ends, even if it is killed).
SPOOL_IN_MEMORY = 8 * 1024 * 1024

_RECORD = struct.Struct('>IIII')  # pattern index, node index, key count, length of the encoded names


class RedisKeysError(EngineError):
    """Bad input, a refused run or a server error. ``result`` holds what was done so far."""


def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    return value.encode('utf-8', 'surrogateescape')


def display(key):
    """A key name for humans: UTF-8 where valid, backslash escapes elsewhere."""
    return key.decode('utf-8', 'backslashreplace')


def _shown(pattern, limit=100):
    """A pattern quoted for a one-line message, cut after ``limit`` characters."""
    text = display(pattern)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + '... (%d characters)' % len(text)


# Redis glob patterns, read exactly as Redis's matcher (stringmatchlen, util.c) reads them: a
# pattern is a sequence of atoms, each either STAR (any run of bytes, also none) or the set of
# bytes one key byte may be (a literal byte or an escaped one: that byte; '?': any byte; a class
# '[...]': its members). Quirks kept on purpose, since the server has them: '^' negates a class
# ('!' does not), ranges compare C chars, which are signed (so '[a-\xff]' is bytes 0x00-0x61 plus
# 0xff), a '-' right before ']' makes ']' a range end, an unclosed class runs to the end of the
# pattern, '[]' matches nothing and '[^]' any byte, a lone '\' at the end is a literal backslash.
STAR = None
ANY_BYTE = frozenset(range(256))
MAX_STAR_NESTING = 1000


def _signed(byte):
    return byte - 256 if byte > 127 else byte


def _glob_class(pattern, p):
    """The class starting at ``pattern[p]`` (just after '['): (index of its last byte, byte set)."""
    end = len(pattern)
    negate = p < end and pattern[p] == 94  # '^'
    if negate:
        p += 1
    members = set()
    while True:
        if p < end and pattern[p] == 92 and end - p >= 2:  # '\' escapes the next byte
            p += 1
            members.add(pattern[p])
        elif p < end and pattern[p] == 93:  # ']'
            break
        elif p >= end:  # unclosed: the class ends with the pattern
            p -= 1
            break
        elif end - p >= 3 and pattern[p + 1] == 45:  # 'a-z', compared as signed chars
            low, high = sorted((_signed(pattern[p]), _signed(pattern[p + 2])))
            members.update(value & 0xff for value in range(low, high + 1))
            p += 2
        else:
            members.add(pattern[p])
        p += 1
    return p, frozenset(ANY_BYTE - members if negate else members)


def glob_atoms(pattern):
    """The atoms of a Redis glob pattern: STAR, or a frozenset of the bytes one key byte may be."""
    pattern = _to_bytes(pattern)
    atoms = []
    p, end = 0, len(pattern)
    while p < end:
        char = pattern[p]
        if char == 42:  # '*'
            if not atoms or atoms[-1] is not STAR:
                atoms.append(STAR)
        elif char == 63:  # '?'
            atoms.append(ANY_BYTE)
        elif char == 91:  # '['
            p, members = _glob_class(pattern, p + 1)
            atoms.append(members)
        else:
            if char == 92 and end - p >= 2:  # '\' escape
                p += 1
            atoms.append(frozenset([pattern[p]]))
        p += 1
    return atoms


def atoms_match(atoms, key):
    """True when the atoms of a pattern match the whole ``key`` (bytes), as Redis's matcher decides.

    The usual wildcard walk (on a mismatch, let the last STAR take one byte more and go on): time
    proportional to key length x pattern length at worst, whatever the pattern. Like the server
    (7.0.15 as Debian ships it, 7.2.6, 7.4.1 and later), a pattern that needs more than
    MAX_STAR_NESTING STARs before its end matches nothing, and an empty key name is never matched.
    """
    if not key or sum(1 for atom in atoms[:-1] if atom is STAR) > MAX_STAR_NESTING:
        return False
    a = k = 0
    star = None  # (atom index of the last STAR seen, key index it resumes from)
    while k < len(key):
        if a < len(atoms) and atoms[a] is STAR:
            star = (a, k)
            a += 1
        elif a < len(atoms) and key[k] in atoms[a]:
            a += 1
            k += 1
        elif star is not None:
            star = (star[0], star[1] + 1)
            a, k = star[0] + 1, star[1]
        else:
            return False
    while a < len(atoms) and atoms[a] is STAR:
        a += 1
    return a == len(atoms)


def glob_match(pattern, string):
    """True when ``SCAN ... MATCH pattern`` returns the key ``string`` (both bytes or text).

    Used to attribute a key matched by several patterns to the first one, so counts do not
    double count. SCAN returns the empty key name only for the pattern ``*`` exactly, which it
    does not run the matcher for.
    """
    pattern, string = _to_bytes(pattern), _to_bytes(string)
    if not string:
        return pattern == b'*'
    return atoms_match(glob_atoms(pattern), string)


def literal_bytes(pattern):
    """Bytes every key matching ``pattern`` contains: the atoms that allow exactly one byte."""
    return sorted(set(next(iter(atom)) for atom in glob_atoms(pattern) if atom is not STAR and len(atom) == 1))


def matches_nearly_everything(pattern):
    """True when ``pattern`` names no byte that every matching key must contain.

    Such a pattern is made only of STAR, '?' and classes of several bytes (``*``, ``?*``, ``*?``,
    ``[^x]*``, ``[a-z]*``, ``[!x]*``...), so for any byte there is a key it matches that does not
    contain that byte: it cannot be telling one family of keys from the others. A pattern with an
    empty class matches no key at all and is not counted as such.
    """
    atoms = glob_atoms(pattern)
    if any(atom is not STAR and not atom for atom in atoms):
        return False
    return not literal_bytes(pattern)


def validate_patterns(patterns, allow_all=False):
    """Patterns as bytes; refuses empty lists, empty patterns and patterns without a literal byte."""
    if isinstance(patterns, (str, bytes)):
        patterns = [patterns]
    if not patterns:
        raise RedisKeysError('patterns is empty: give at least one glob pattern such as "cache:*"')
    result = []
    for pattern in patterns:
        if pattern is None or not _to_bytes(pattern).strip():
            raise RedisKeysError('an empty pattern is refused: give a glob pattern such as "cache:*"')
        raw = _to_bytes(pattern)
        if not allow_all and matches_nearly_everything(raw):
            raise RedisKeysError(
                'pattern %s is refused: it can match (nearly) every key, since no literal character is common '
                'to all the keys it matches (it is made only of *, ? and classes of several characters); give a '
                'literal part such as "cache:*", or set allow_all to true' % _shown(raw))
        if raw not in result:
            result.append(raw)
    return result


def _check_int(name, value, minimum, maximum=None, optional=False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RedisKeysError('%s must be an integer, got %r' % (name, value))
    if value < minimum or (maximum is not None and value > maximum):
        if maximum is None:
            raise RedisKeysError('%s must be >= %d, got %d' % (name, minimum, value))
        raise RedisKeysError('%s must be between %d and %d, got %d' % (name, minimum, maximum, value))
    return value


def key_filters(params):
    """The KEY_FILTER_ARGUMENT_SPEC options of ``params`` but ``patterns``, as KeyCleaner takes them."""
    return dict((name, params[name]) for name in KEY_FILTER_ARGUMENT_SPEC if name != 'patterns')


def _idle_seconds(min_idle_time):
    """Whole seconds of ``min_idle_time`` (a duration with a unit), rounded up: OBJECT IDLETIME counts seconds."""
    try:
        seconds = duration_option(min_idle_time, 'min_idle_time', 0, MAX_IDLE_SECONDS, optional=True)
    except DurationError as error:
        raise RedisKeysError(str(error))
    return None if seconds is None else int(math.ceil(seconds))


def _send_with_keys(client, head, count, encoded):
    """Send the command ``head`` + ``count`` key names already encoded as RESP bulk strings; its reply.

    The names come back from the server as it encoded them, so this process never parses them.
    """
    head = [arg if isinstance(arg, bytes) else str(arg).encode('utf-8', 'surrogateescape') for arg in head]
    packed = b'*%d\r\n' % (len(head) + count) + b''.join(b'$%d\r\n%s\r\n' % (len(arg), arg) for arg in head)
    try:
        connection = client.connection_pool.get_connection()
    except TypeError:  # redis-py before 5.3 (Debian 12's python3-redis, which the maintenance role uses)
        connection = client.connection_pool.get_connection('UNLINK')
    try:
        connection.send_packed_command([packed, encoded])
        return connection.read_response()
    finally:
        client.connection_pool.release(connection)


class KeyCleaner(object):
    """One run over one client (single server, Sentinel master or Redis Cluster)."""

    def __init__(self, client, patterns, key_type=None, no_ttl_only=False, min_idle_time=None,
                 max_keys=None, scan_count=DEFAULT_SCAN_COUNT, batch_size=DEFAULT_BATCH_SIZE,
                 sample_size=DEFAULT_SAMPLE_SIZE, allow_all=False):
        self.client = client
        self.patterns = validate_patterns(patterns, allow_all)
        if key_type is not None and key_type not in KEY_TYPES:
            raise RedisKeysError('key_type must be one of %s, got %r' % (', '.join(KEY_TYPES), key_type))
        self.key_type = key_type
        self.no_ttl_only = bool(no_ttl_only)
        self.idle_seconds = _idle_seconds(min_idle_time)
        self.max_keys = _check_int('max_keys', max_keys, 0, optional=True)
        self.scan_count = _check_int('scan_count', scan_count, 1, MAX_SCAN_COUNT)
        self.batch_size = _check_int('batch_size', batch_size, 1, MAX_BATCH_SIZE)
        self.sample_size = _check_int('sample_size', sample_size, 0, MAX_SAMPLE_SIZE)

    @property
    def cluster(self):
        return self.client.__class__.__name__ == 'RedisCluster'

    def _nodes(self):
        """(name, plain redis.Redis client) for every master to scan."""
        if not self.cluster:
            return [(self._node_name(self.client), self.client)]
        return [('%s:%s' % (node.host, node.port), self.client.get_redis_connection(node))
                for node in self.client.get_primaries()]

    @staticmethod
    def _node_name(client):
        try:
            kwargs = client.connection_pool.connection_kwargs
            return '%s:%s' % (kwargs.get('host', '?'), kwargs.get('port', '?'))
        except AttributeError:  # pragma: no cover
            return 'redis'

    def _call(self, script, pattern, cursor, apply, room=-1, want=0, keep=False):
        """One SCAN page through PAGE_SCRIPT: (cursor, keys looked at, passed, deleted, names, encoded names)."""
        return script(args=self._script_args('scan', pattern, cursor, apply, room, want, keep))

    def _script_args(self, source, pattern=b'', cursor=b'0', apply=True, room=-1, want=0, keep=False):
        return [source, cursor, pattern, self.scan_count, self.key_type or '', '1' if apply else '0',
                '1' if self.no_ttl_only else '0', -1 if self.idle_seconds is None else self.idle_seconds,
                room, want, 1 if self.cluster else self.batch_size, '1' if keep else '0']

    def _scan(self, nodes, result, apply, budget=None, spool=None, stop_above=None):
        """Walk every pattern on every node, one SCAN page per call; count, delete when ``apply``.

        ``budget``: delete no more than this many keys. ``spool``: keep the names that passed
        (packed, with their pattern and node) for a later delete pass. ``stop_above``: stop as
        soon as more keys than this have matched.
        """
        for index, pattern in enumerate(self.patterns):
            # Counting several patterns: a key an earlier pattern also matches is counted there,
            # so the page's names come back to be checked here (deleting needs no such care).
            earlier = [] if apply else [glob_atoms(p) for p in self.patterns[:index]]
            for node_index, (_name, node) in enumerate(nodes):
                script = node.register_script(CLUSTER_PAGE_SCRIPT if self.cluster else PAGE_SCRIPT)
                cursor = b'0'
                while True:
                    room = -1 if budget is None else max(budget - result['deleted'], 0)
                    want = -1 if earlier else max(self.sample_size - len(result['sample']), 0)
                    reply = self._call(script, pattern, cursor, apply, room, want, spool is not None)
                    cursor = reply[0]
                    self._account(result, index, node_index, reply, earlier, spool)
                    if stop_above is not None and result['matched'] > stop_above:
                        return
                    if int(cursor) == 0:
                        break
        if budget is not None and apply:
            # Keys added while deleting: max_keys were deleted, the rest left in place.
            result['limit_reached'] = result['matched'] > result['deleted'] >= budget

    def _account(self, result, index, node_index, reply, earlier, spool):
        """Add one page's reply to the result (and its encoded names to the spool)."""
        _cursor, scanned, passed, deleted, names, encoded = reply
        if encoded:
            # The script encodes every key that passed: ``passed`` names, before any deduplication
            # here. This count becomes the argument count of the command that sends them back, so
            # it must be exact (a wrong one would make the server read key names as commands).
            spool.write(_RECORD.pack(index, node_index, passed, len(encoded)) + encoded)
        if earlier:
            names = [key for key in names if not any(atoms_match(atoms, key) for atoms in earlier)]
            passed = len(names)
        counts = result['patterns'][display(self.patterns[index])]
        result['scan_calls'] += 1
        result['scanned'] += scanned
        result['matched'] += passed
        counts['matched'] += passed
        result['deleted'] += deleted
        counts['deleted'] += deleted
        self._add_sample(result['sample'], names)

    def _delete_kept(self, nodes, result, spool):
        """Delete the names the counting pass kept, about ``scan_count`` keys per call.

        The names go back to the server as the counting pass encoded them (no parsing here): as
        the arguments of a plain ``UNLINK`` when nothing needs checking again, else of PAGE_SCRIPT,
        which checks the filters again and unlinks in the same atomic call (on a cluster always:
        the keys of a batch sit in many hash slots).
        """
        spool.seek(0)
        plain = not (self.cluster or self.key_type or self.no_ttl_only or self.idle_seconds is not None)
        script = CLUSTER_PAGE_SCRIPT if self.cluster else PAGE_SCRIPT
        shas = [None if plain else node.script_load(script) for _name, node in nodes]
        for (index, node_index), count, encoded in self._kept_batches(spool):
            node = nodes[node_index][1]
            if plain:
                deleted = _send_with_keys(node, [b'UNLINK'], count, encoded)
            else:
                deleted = _send_with_keys(node, [b'EVALSHA', shas[node_index], b'0'] + self._script_args('names'),
                                          count, encoded)[3]
            result['deleted'] += deleted
            result['patterns'][display(self.patterns[index])]['deleted'] += deleted

    def _kept_batches(self, spool):
        """((pattern index, node index), key count, encoded names) of about ``scan_count`` keys, in spool order."""
        batch, batch_keys, batch_of = [], 0, None
        while True:
            header = spool.read(_RECORD.size)
            record = _RECORD.unpack(header) if header else None
            if batch and (record is None or record[:2] != batch_of or batch_keys >= self.scan_count):
                yield batch_of, batch_keys, b''.join(batch)
                batch, batch_keys = [], 0
            if record is None:
                return
            batch_of = record[:2]
            batch.append(spool.read(record[3]))
            batch_keys += record[2]

    def _add_sample(self, sample, keys):
        room = self.sample_size - len(sample)
        if room > 0:
            for key in keys[:room]:
                text = display(key)
                if text not in sample:
                    sample.append(text)

    def _empty_result(self):
        return dict(
            matched=0, deleted=0, scanned=0, scan_calls=0, sample=[], limit_reached=False,
            patterns=dict((display(p), dict(matched=0, deleted=0)) for p in self.patterns),
            nodes=0, elapsed_seconds=0.0, counted_first=False, guard='none',
        )

    def _guarded(self, nodes, result):
        """Delete under ``max_keys``: refuse before deleting anything when more keys match.

        When the databases hold no more keys than ``max_keys`` in all, no count is needed. Otherwise
        one counting pass keeps the names of the matching keys aside (memory flat: they spill to an
        unnamed temporary file) and stops as soon as too many match; the delete pass then works from
        those names instead of scanning the keyspace again.
        """
        if sum(node.dbsize() for _name, node in nodes) <= self.max_keys:
            result['guard'] = 'dbsize'
            self._scan(nodes, result, apply=True, budget=self.max_keys)
            return
        result['guard'] = 'counted'
        result['counted_first'] = True
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            self._scan(nodes, result, apply=False, spool=spool, stop_above=self.max_keys)
            if result['matched'] > self.max_keys:
                raise RedisKeysError(
                    'refused: more than max_keys=%d keys match %s (counting stopped at %d); nothing was deleted'
                    % (self.max_keys, ', '.join(result['patterns']), result['matched']), result)
            self._delete_kept(nodes, result, spool)

    def run(self, dry_run=False):
        """Count (dry_run) or delete; returns the result dict. Raises RedisKeysError."""
        from redis import exceptions as redis_exceptions
        started = time.monotonic()
        result = self._empty_result()
        try:
            nodes = self._nodes()
            result['nodes'] = len(nodes)
            if dry_run:
                self._scan(nodes, result, apply=False)
            elif self.max_keys is None:
                self._scan(nodes, result, apply=True)
            else:
                self._guarded(nodes, result)
        except RedisKeysError:
            result['elapsed_seconds'] = round(time.monotonic() - started, 3)
            raise
        except (redis_exceptions.RedisError, OSError) as error:
            result['elapsed_seconds'] = round(time.monotonic() - started, 3)
            message = ' '.join(str(error).split()) or error.__class__.__name__
            raise RedisKeysError('Redis error after deleting %d keys: %s' % (result['deleted'], message), result)
        result['elapsed_seconds'] = round(time.monotonic() - started, 3)
        return result


def delete_keys(client, patterns, dry_run=False, **options):
    """Delete keys matching ``patterns``; with ``dry_run`` only count them. See KeyCleaner for options."""
    return KeyCleaner(client, patterns, **options).run(dry_run=dry_run)


def count_keys(client, patterns, **options):
    """Count the keys ``delete_keys`` would delete; deletes nothing."""
    options.pop('max_keys', None)
    return count_result(KeyCleaner(client, patterns, **options).run(dry_run=True))


def count_result(result):
    """The facts of a count (``run(dry_run=True)``): what matched, not what a delete would report."""
    counted = dict((key, value) for key, value in result.items()
                   if key not in ('deleted', 'limit_reached', 'counted_first', 'guard'))
    if 'patterns' in counted:
        counted['patterns'] = dict((pattern, dict(matched=figures.get('matched', 0)))
                                   for pattern, figures in counted['patterns'].items())
    return counted
