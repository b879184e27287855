# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lua scripts of the BullMQ engine (written for this collection, one batch per call).

Every script works on a bounded batch handed over in ARGV (or a bounded range it
reads itself) so no call blocks Redis for long, whatever the size of the queue.
Job keys are built inside Lua from the job-key prefix ``<prefix>:<name>:`` and the
id, exactly as BullMQ does; with a hash-tagged prefix (``{bull}``) every key of a
queue lives in one cluster slot.

A Lua script is not a transaction: a command that fails half-way leaves the writes
before it in place. So every script that writes first checks, before its first write,
the type of every queue key it touches and the meta fields it reads (``refusal``), and
checks each job before the job leaves its source (``jobProblem``). A job that fails its
check stays where it was and is returned with the reason; the other jobs of the batch
still move. Each job is pushed to its destination in the same step as it leaves its
source, never at the end of the batch. The read-only ``INSPECT_*`` scripts used by check
mode run the same checks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Largest value accepted in the integer fields the scripts read: a stalled counter, a meta count
# (opts.maxLenEvents, concurrency), the priority counter ``pc``; BullMQ's own priority limit is 2^21.
COUNT_LIMIT = 10 ** 15
PRIORITY_LIMIT = 2 ** 21

# Shared checks. ``isCount``: "0" or a decimal integer without sign or leading zero, at most
# ``limit`` (stricter than HINCRBY/INCR, so a checked value can always be incremented).
_CHECKS = r'''
local function keyType(key)
  return redis.call("TYPE", key)["ok"]
end
local function shown(value)
  if #value > 40 then return string.sub(value, 1, 40) .. "..." end
  return value
end
local function isCount(text, limit)
  return (text == "0" or string.match(text, "^[1-9]%d*$") ~= nil) and #text <= 16 and tonumber(text) <= limit
end
local function notCount(what, value, limit)
  return what .. " is '" .. shown(value) .. "', not an integer from 0 to " .. string.format("%d", limit)
end
-- Why a job's key cannot be handled ("" when it can), and its type: it must be a hash (or absent
-- when missingOk).
local function typeProblem(jobKey, missingOk)
  local found = keyType(jobKey)
  if found == "none" then
    if missingOk then return "", found end
    return "job hash missing", found
  end
  if found ~= "hash" then return "job key is a " .. found .. ", not a hash", found end
  return "", found
end
-- The same, and ``field`` (none when ""), when present, an integer from 0 to ``limit``.
local function jobProblem(jobKey, field, limit, missingOk)
  local problem, found = typeProblem(jobKey, missingOk)
  if problem == "" and found == "hash" and field ~= "" then
    local value = redis.call("HGET", jobKey, field)
    if value and not isCount(value, limit) then return notCount("field " .. field, value, limit), found end
  end
  return problem, found
end
-- Can HINCRBY add 1 to this stored counter? Exactly Redis's rule: a decimal 64-bit integer without
-- "+", leading zeros or "-0", below 2^63 - 1.
local function incrementable(text)
  if text == "0" then return true end
  local sign, digits = string.match(text, "^(%-?)([1-9]%d*)$")
  if not digits or #digits > 19 then return false end
  if #digits < 19 then return true end
  if sign == "-" then return digits <= "9223372036854775808" end
  return digits <= "9223372036854775806"
end
local function notCounter(field, value)
  return "field " .. field .. " is '" .. shown(value) .. "', not an integer HINCRBY can increment"
end
-- An error reply (nothing written yet) when a key of ``checks`` ({key, type, ...}) has another type,
-- a count field of ``metaKey`` (optional) is not a count, or ``counterKey`` (optional) holds no count;
-- else nil. Only keys the script declares are read (Redis Cluster).
local function refusal(checks, metaKey, counterKey)
  for i = 1, #checks, 2 do
    local found = keyType(checks[i])
    if found ~= "none" and found ~= checks[i + 1] then
      return redis.error_reply("refusing: key " .. checks[i] .. " has type " .. found .. ", expected " .. checks[i + 1])
    end
  end
  if metaKey then
    local values = redis.call("HMGET", metaKey, "opts.maxLenEvents", "concurrency")
    for i, field in ipairs({"opts.maxLenEvents", "concurrency"}) do
      if values[i] and not isCount(values[i], COUNT_LIMIT) then
        return redis.error_reply("refusing: " .. notCount("meta field " .. field, values[i], COUNT_LIMIT))
      end
    end
  end
  if counterKey then
    local value = redis.call("GET", counterKey)
    if value and not isCount(value, COUNT_LIMIT) then
      return redis.error_reply("refusing: " .. notCount("key " .. counterKey, value, COUNT_LIMIT))
    end
  end
  return nil
end
'''.replace('COUNT_LIMIT', str(COUNT_LIMIT))

# Is the queue paused, or at its global concurrency (meta.concurrency)? Both checked by ``refusal``.
_PAUSED_OR_MAXED = r'''
local function pausedOrMaxed(metaKey, activeKey)
  local attrs = redis.call("HMGET", metaKey, "paused", "concurrency")
  if attrs[1] then return true, true end
  if attrs[2] then
    return false, redis.call("LLEN", activeKey) >= tonumber(attrs[2])
  end
  return false, false
end
local function maxEvents(metaKey)
  return tonumber(redis.call("HGET", metaKey, "opts.maxLenEvents")) or 10000
end
'''

# Is a job run by a job scheduler (its ``rjk`` names a scheduler that still exists)? Such a job is
# never failed for stalling, as in BullMQ.
_SCHEDULED = r'''
local function scheduled(repeatKey, rjk)
  return rjk and (redis.call("EXISTS", repeatKey .. ":" .. rjk) == 1 or redis.call("ZSCORE", repeatKey, rjk)) and true
    or false
end
'''

# Read one window of ``active`` and, in the same atomic step, whether each job holds a lock and
# when it started (processedOn, else timestamp; '' when unknown or the job key is no hash). Read-only.
# Reading the ids and then their locks in a second round trip would show a job that completes in
# between as "active without a lock". (The engine reads INSPECT_ACTIVE_WINDOW, which adds the checks
# of a repair; this short form is kept for scripts/demo.py.)
# KEYS: 1 active.  ARGV: 1 job key prefix, 2 start, 3 stop (LRANGE indexes, negative from the tail).
# Returns {id, locked (0|1), started, ...} for the window, tail (oldest) first.
SCAN_ACTIVE_WINDOW = r"""
local ids = redis.call("LRANGE", KEYS[1], ARGV[2], ARGV[3])
local out = {}
for i = #ids, 1, -1 do
  local key = ARGV[1] .. ids[i]
  local started = ""
  if redis.call("TYPE", key)["ok"] == "hash" then
    local times = redis.call("HMGET", key, "processedOn", "timestamp")
    started = times[1] or times[2] or ""
  end
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call("EXISTS", key .. ":lock")
  out[#out + 1] = started
end
return out
"""

# The same window with the checks of a repair: for each job whether it holds a lock, when it started,
# why it cannot be repaired ("" when it can), its stalled counter and whether a job scheduler runs it.
# Read-only; check mode and bullmq_queue_info predict a repair from it.
# KEYS: 1 active, 2 repeat.  ARGV: 1 job key prefix, 2 start, 3 stop (LRANGE indexes, negative from the
# tail), 4 stalled counter field (stc | stalledCounter).
# Returns {id, locked (0|1), started, problem, counter, scheduled (0|1), ...}, tail (oldest) first;
# started and counter are '' when absent.
INSPECT_ACTIVE_WINDOW = _CHECKS + _SCHEDULED + r"""
local refused = refusal({KEYS[1], "list", KEYS[2], "zset"})
if refused then return refused end
local ids = redis.call("LRANGE", KEYS[1], ARGV[2], ARGV[3])
local out = {}
for i = #ids, 1, -1 do
  local key = ARGV[1] .. ids[i]
  local problem, found = typeProblem(key, false)
  local started, counter, isScheduled = "", "", 0
  if found == "hash" then
    local fields = redis.call("HMGET", key, "processedOn", "timestamp", ARGV[4], "rjk")
    started = fields[1] or fields[2] or ""
    counter = fields[3] or ""
    if fields[3] and not incrementable(fields[3]) then problem = notCounter(ARGV[4], fields[3]) end
    if scheduled(KEYS[2], fields[4]) then isScheduled = 1 end
  end
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call("EXISTS", key .. ":lock")
  out[#out + 1] = started
  out[#out + 1] = problem
  out[#out + 1] = counter
  out[#out + 1] = isScheduled
end
return out
"""

# Move a batch of orphaned active jobs back to wait.
# The script reads the tail window of ``active`` itself (LRANGE -n -1, the oldest jobs) and walks it
# tail first; nothing else runs during the script, so the tail is always the job at hand and no call
# ever scans the list (LREM on a long list is O(N)). The walk stops early once the call has run for
# ARGV[8] ms (checked every 50 jobs), so a call stays short whatever the machine.
# - lock key present (a live worker holds it): rotate it to the head of ``active`` (RPOPLPUSH
#   active active), the place a freshly taken job has; it stays active, its lock is untouched;
# - lock key absent but the job cannot be repaired (its key is no hash, or its stalled counter is no
#   integer HINCRBY can increment - HINCRBY itself, through pcall, writes nothing then): rotated the
#   same way, so it stays in ``active``, and returned with the reason;
# - otherwise: the stall is counted, the over-limit treatment applied, and the job leaves ``active``
#   (RPOP) and is pushed to the target list (or ZADDed to failed) in the same step; events as
#   BullMQ's moveStalledJobsToWait writes them; the stream is trimmed to meta opts.maxLenEvents once
#   per batch.
# KEYS: 1 active, 2 wait, 3 paused, 4 meta, 5 marker, 6 events, 7 repeat, 8 failed, 9 stalled
# ARGV: 1 job key prefix, 2 max stalled count, 3 counter field (stc | stalledCounter),
#       4 over-limit treatment (defer | fail), 5 data model (v5 | v6), 6 now (ms), 7 jobs to visit at
#       most, 8 time budget (ms), 9 ids returned at most per list below
# Returns {{visited, moved, locked, over_limit, corrupt} counts, moved ids, locked ids, over-limit ids,
#          corrupt ({id, reason, ...})}, the id lists cut to ARGV[9] entries.
REPAIR_STALLED = _CHECKS + _PAUSED_OR_MAXED + _SCHEDULED + r"""
local refused = refusal({KEYS[1], "list", KEYS[2], "list", KEYS[3], "list", KEYS[4], "hash", KEYS[5], "zset",
                         KEYS[6], "stream", KEYS[7], "zset", KEYS[8], "zset", KEYS[9], "set"}, KEYS[4])
if refused then return refused end
local prefix = ARGV[1]
local maxStalled = tonumber(ARGV[2])
local field = ARGV[3]
local failMode = ARGV[4] == "fail"
local now = ARGV[6]
local budgetUs = tonumber(ARGV[8]) * 1000
local room = tonumber(ARGV[9])
local reason = "job stalled more than allowable limit"
local active = KEYS[1]
local events = KEYS[6]
local target = KEYS[2]
if ARGV[5] == "v5" and redis.call("HEXISTS", KEYS[4], "paused") == 1 then target = KEYS[3] end
local ids = redis.call("LRANGE", active, -tonumber(ARGV[7]), -1)
local counts = {0, 0, 0, 0, 0}  -- visited, moved, locked, over limit, corrupt
local moved, locked, over, corrupt, left = {}, {}, {}, {}, {}
local function note(list, at, id)
  counts[at] = counts[at] + 1
  if #list < room then list[#list + 1] = id end
end
local clock = redis.call("TIME")
local startUs = clock[1] * 1000000 + clock[2]
for i = #ids, 1, -1 do
  if counts[1] > 0 and counts[1] % 50 == 0 then
    clock = redis.call("TIME")
    if clock[1] * 1000000 + clock[2] - startUs >= budgetUs then break end
  end
  counts[1] = counts[1] + 1
  local id = ids[i]
  local jobKey = prefix .. id
  if redis.call("EXISTS", jobKey .. ":lock") == 1 then
    redis.call("RPOPLPUSH", active, active)
    note(locked, 3, id)
  else
    local problem = typeProblem(jobKey, false)
    local count
    if problem == "" then
      count = redis.pcall("HINCRBY", jobKey, field, 1)
      if type(count) == "table" then problem = notCounter(field, redis.call("HGET", jobKey, field)) end
    end
    if problem ~= "" then
      redis.call("RPOPLPUSH", active, active)
      counts[5] = counts[5] + 1
      if #corrupt < 2 * room then
        corrupt[#corrupt + 1] = id
        corrupt[#corrupt + 1] = problem
      end
    else
      local overLimit = count > maxStalled and not scheduled(KEYS[7], redis.call("HGET", jobKey, "rjk"))
      if overLimit then note(over, 4, id) end
      redis.call("RPOP", active)
      left[#left + 1] = id
      if overLimit and failMode then
        redis.call("ZADD", KEYS[8], now, id)
        redis.call("HSET", jobKey, "failedReason", reason, "finishedOn", now)
        redis.call("XADD", events, "*", "event", "failed", "jobId", id, "failedReason", reason, "prev", "active")
      else
        -- to the tail of the target list (RPUSH, as BullMQ)
        redis.call("RPUSH", target, id)
        if overLimit then redis.call("HSET", jobKey, "defa", reason) end
        redis.call("XADD", events, "*", "event", "waiting", "jobId", id, "prev", "active")
        redis.call("XADD", events, "*", "event", "stalled", "jobId", id)
        note(moved, 2, id)
      end
    end
  end
end
-- no longer candidates of BullMQ's own next stalled check; at most 7000 arguments per command
for from = 1, #left, 7000 do
  redis.call("SREM", KEYS[9], unpack(left, from, math.min(from + 6999, #left)))
end
if #left > 0 then
  -- events: trimmed once per batch, as BullMQ trims once per pass
  redis.call("XTRIM", events, "MAXLEN", "~", maxEvents(KEYS[4]))
end
if counts[2] > 0 then
  local isPaused, isMaxed = pausedOrMaxed(KEYS[4], active)
  if not isPaused and not isMaxed then redis.call("ZADD", KEYS[5], 0, "0") end
end
return {counts, moved, locked, over, corrupt}
"""

# Check, without writing, a window of a sorted set (failed, completed or delayed) with score <= ARGV[2]:
# what MOVE_SET_TO_WAIT (``move``) or CLEAN_SET (``clean``) would do with each job.
# KEYS: 1 zset, 2 pc (the priority counter a move increments).
# ARGV: 1 job key prefix, 2 max score, 3 count, 4 offset, 5 move | clean
# Returns {id, problem ('' when the job can be handled), prioritized (0|1), ...}.
INSPECT_SET_WINDOW = _CHECKS + r"""
local clean = ARGV[5] == "clean"
local refused
if clean then
  refused = refusal({KEYS[1], "zset"})
else
  refused = refusal({KEYS[1], "zset", KEYS[2], "string"}, nil, KEYS[2])
end
if refused then return refused end
local jobs = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[2], "LIMIT", tonumber(ARGV[4]), tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(jobs) do
  local jobKey = ARGV[1] .. id
  local problem
  if clean then
    problem = jobProblem(jobKey, "", 0, true)
  else
    problem = jobProblem(jobKey, "priority", PRIORITY_LIMIT, false)
  end
  local prioritized = 0
  if problem == "" and not clean and (tonumber(redis.call("HGET", jobKey, "priority")) or 0) > 0 then
    prioritized = 1
  end
  out[#out + 1] = id
  out[#out + 1] = problem
  out[#out + 1] = prioritized
end
return out
""".replace('PRIORITY_LIMIT', str(PRIORITY_LIMIT)).replace('COUNT_LIMIT', str(COUNT_LIMIT))

# Move up to ARGV[3] jobs of a sorted set (failed, completed or delayed) with score <= ARGV[2]
# back to waiting, as BullMQ's retryJobs / promoteJobs do. The window starts at ARGV[4]: the jobs
# before it are the ones earlier batches left in the set because they failed their check.
# Each job is checked (hash, priority an integer from 0 to 2^21) before it leaves the set and is
# pushed in the same step; a job that fails its check stays in the set and is returned with the reason.
# KEYS: 1 source zset, 2 wait, 3 paused, 4 meta, 5 active, 6 marker, 7 events, 8 prioritized, 9 pc
# ARGV: 1 job key prefix, 2 max score, 3 count, 4 offset, 5 previous state, 6 data model (v5 | v6)
# Returns {moved ids, corrupt ({id, reason, ...}), visited}.
MOVE_SET_TO_WAIT = _CHECKS + _PAUSED_OR_MAXED + r'''
local refused = refusal({KEYS[1], "zset", KEYS[2], "list", KEYS[3], "list", KEYS[4], "hash", KEYS[5], "list",
                         KEYS[6], "zset", KEYS[7], "stream", KEYS[8], "zset", KEYS[9], "string"}, KEYS[4], KEYS[9])
if refused then return refused end
local prefix = ARGV[1]
local prev = ARGV[5]
local jobs = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[2], "LIMIT", tonumber(ARGV[4]), tonumber(ARGV[3]))
local moved, corrupt = {}, {}
if #jobs == 0 then return {moved, corrupt, 0} end
local isPaused, isMaxed = pausedOrMaxed(KEYS[4], KEYS[5])
local target = KEYS[2]
if isPaused and ARGV[6] == "v5" then target = KEYS[3] end
local maxLen = maxEvents(KEYS[4])
for _, id in ipairs(jobs) do
  local jobKey = prefix .. id
  local problem = jobProblem(jobKey, "priority", PRIORITY_LIMIT, false)
  if problem ~= "" then
    corrupt[#corrupt + 1] = id
    corrupt[#corrupt + 1] = problem
  else
    if prev == "failed" then
      redis.call("HDEL", jobKey, "finishedOn", "processedOn", "failedReason")
    elseif prev == "completed" then
      redis.call("HDEL", jobKey, "finishedOn", "processedOn", "returnvalue")
    elseif prev == "delayed" then
      redis.call("HSET", jobKey, "delay", 0)
    end
    local priority = tonumber(redis.call("HGET", jobKey, "priority")) or 0
    redis.call("ZREM", KEYS[1], id)
    if priority > 0 then
      local counter = redis.call("INCR", KEYS[9])
      redis.call("ZADD", KEYS[8], priority * 0x100000000 + counter % 0x100000000, id)
    else
      redis.call("LPUSH", target, id)
    end
    moved[#moved + 1] = id
    redis.call("XADD", KEYS[7], "*", "event", "waiting", "jobId", id, "prev", prev)
  end
end
if #moved > 0 then
  redis.call("XTRIM", KEYS[7], "MAXLEN", "~", maxLen)
  if not isPaused and not isMaxed then redis.call("ZADD", KEYS[6], 0, "0") end
end
return {moved, corrupt, #jobs}
'''.replace('PRIORITY_LIMIT', str(PRIORITY_LIMIT))

# Delete up to ARGV[3] finished jobs (completed or failed) whose score (finishedOn) <= ARGV[2],
# with their keys, as BullMQ's clean does; the window starts at ARGV[4] (jobs left by earlier
# batches). A job whose key holds another type than a hash is not ours to delete: it stays in the
# set and is returned with the reason. A job whose hash is already gone only leaves the set.
# KEYS: 1 zset, 2 events, 3 meta
# ARGV: 1 job key prefix, 2 max score, 3 count, 4 offset, 5 deduplication key prefix (<prefix>:<name>:de:)
# Returns {deleted ids, corrupt ({id, reason, ...}), visited}.
CLEAN_SET = _CHECKS + r'''
local refused = refusal({KEYS[1], "zset", KEYS[2], "stream", KEYS[3], "hash"}, KEYS[3])
if refused then return refused end
local prefix = ARGV[1]
local jobs = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[2], "LIMIT", tonumber(ARGV[4]), tonumber(ARGV[3]))
local deleted, corrupt = {}, {}
for _, id in ipairs(jobs) do
  local jobKey = prefix .. id
  local problem = jobProblem(jobKey, "", 0, true)
  if problem ~= "" then
    corrupt[#corrupt + 1] = id
    corrupt[#corrupt + 1] = problem
  else
    local dedup = redis.call("HGET", jobKey, "deid")
    if dedup then
      local dedupKey = ARGV[5] .. dedup
      if keyType(dedupKey) == "string" and redis.call("GET", dedupKey) == id then redis.call("DEL", dedupKey) end
    end
    redis.call("DEL", jobKey, jobKey .. ":logs", jobKey .. ":dependencies", jobKey .. ":processed",
               jobKey .. ":failed", jobKey .. ":unsuccessful", jobKey .. ":lock")
    redis.call("ZREM", KEYS[1], id)
    deleted[#deleted + 1] = id
  end
end
if #deleted > 0 then
  local maxLen = tonumber(redis.call("HGET", KEYS[3], "opts.maxLenEvents")) or 10000
  redis.call("XADD", KEYS[2], "MAXLEN", "~", maxLen, "*", "event", "cleaned", "count", #deleted)
end
return {deleted, corrupt, #jobs}
'''

# Pause or resume one step. Sets / clears meta.paused, moves at most ARGV[3] ids from the source
# list head to the destination tail (RENAME when the destination does not exist), and when the
# source is empty handles the marker and emits the event. Returns the ids left in the source.
# Ids move between lists as they are (a job's own state does not matter here); the key types and the
# meta fields are checked before the first write, so no command after it can fail.
# KEYS: 1 source list, 2 destination list, 3 meta, 4 prioritized, 5 events, 6 delayed, 7 marker
# ARGV: 1 paused | resumed, 2 move (1 = move source to destination, 0 = flag only), 3 chunk size
PAUSE_RESUME = _CHECKS + r'''
local refused = refusal({KEYS[1], "list", KEYS[2], "list", KEYS[3], "hash", KEYS[4], "zset", KEYS[5], "stream",
                         KEYS[6], "zset", KEYS[7], "zset"}, KEYS[3])
if refused then return refused end
local action = ARGV[1]
if action == "paused" then
  redis.call("HSET", KEYS[3], "paused", 1)
  redis.call("DEL", KEYS[7])
else
  redis.call("HDEL", KEYS[3], "paused")
end
local left = 0
if ARGV[2] == "1" and redis.call("EXISTS", KEYS[1]) == 1 then
  if redis.call("EXISTS", KEYS[2]) == 0 then
    redis.call("RENAME", KEYS[1], KEYS[2])
  else
    local jobs = redis.call("LRANGE", KEYS[1], 0, tonumber(ARGV[3]) - 1)
    redis.call("RPUSH", KEYS[2], unpack(jobs))
    redis.call("LTRIM", KEYS[1], #jobs, -1)
    left = redis.call("LLEN", KEYS[1])
  end
end
if left == 0 then
  if action == "resumed" then
    local wait = KEYS[2]
    if ARGV[2] ~= "1" then wait = KEYS[1] end
    if redis.call("LLEN", wait) + redis.call("ZCARD", KEYS[4]) > 0 then
      redis.call("ZADD", KEYS[7], 0, "0")
    else
      local first = redis.call("ZRANGE", KEYS[6], 0, 0, "WITHSCORES")
      if first[2] then redis.call("ZADD", KEYS[7], tonumber(first[2]) / 0x1000, "1") end
    end
  end
  local maxLen = tonumber(redis.call("HGET", KEYS[3], "opts.maxLenEvents")) or 10000
  redis.call("XADD", KEYS[5], "MAXLEN", "~", maxLen, "*", "event", action)
end
return left
'''
