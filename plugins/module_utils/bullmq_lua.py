# -*- coding: utf-8 -*-
# Copyright: cerniq.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lua scripts of the BullMQ engine (written for this collection, one batch per call).

Every script works on a bounded batch handed over in ARGV (or a bounded range it
reads itself) so no call blocks Redis for long, whatever the size of the queue.
Job keys are built inside Lua from the job-key prefix ``<prefix>:<name>:`` and the
id, exactly as BullMQ does; with a hash-tagged prefix (``{bull}``) every key of a
queue lives in one cluster slot.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


# Shared helper: is the queue paused, or at its global concurrency (meta.concurrency)?
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

# Read one window of ``active`` and, in the same atomic step, whether each job holds a lock and
# when it started (processedOn, else timestamp). Read-only. Reading the ids and then their locks in
# a second round trip would show a job that completes in between as "active without a lock".
# KEYS: 1 active.  ARGV: 1 job key prefix, 2 start, 3 stop (LRANGE indexes, negative from the tail).
# Returns {id, locked (0|1), started ('' when unknown), ...} for the window, tail (oldest) first.
SCAN_ACTIVE_WINDOW = r"""
local ids = redis.call("LRANGE", KEYS[1], ARGV[2], ARGV[3])
local out = {}
for i = #ids, 1, -1 do
  local key = ARGV[1] .. ids[i]
  local times = redis.call("HMGET", key, "processedOn", "timestamp")
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call("EXISTS", key .. ":lock")
  out[#out + 1] = times[1] or times[2] or ""
end
return out
"""

# Move a batch of orphaned active jobs back to wait.
# The client reads the tail window of ``active`` (LRANGE -n -1) and passes the ids tail first.
# For each id the script re-checks, atomically, that it is still the tail element of ``active``
# (LINDEX -1, O(1)); if the list changed under us the batch stops there and the client reads a
# fresh window, so no call ever scans the list (LREM on a long list is O(N)).
# - lock key absent: RPOP it, count the stall, apply the over-limit treatment, push to the target
#   list, emit events (as BullMQ's moveStalledJobsToWait does; the stream is trimmed to
#   meta opts.maxLenEvents once per batch);
# - lock key present (a live worker holds it): rotate it to the head of ``active`` (RPOPLPUSH
#   active active), the place a freshly taken job has; it stays active, its lock is untouched.
# KEYS: 1 active, 2 wait, 3 paused, 4 meta, 5 marker, 6 events, 7 repeat, 8 failed, 9 stalled
# ARGV: 1 job key prefix, 2 max stalled count, 3 counter field (stc | stalledCounter),
#       4 over-limit treatment (defer | fail), 5 data model (v5 | v6), 6 now (ms), 7.. job ids
# Returns {moved, locked, over_limit, visited}.
REPAIR_STALLED = _PAUSED_OR_MAXED + r"""
local prefix = ARGV[1]
local maxStalled = tonumber(ARGV[2])
local field = ARGV[3]
local failMode = ARGV[4]
local model = ARGV[5]
local now = ARGV[6]
local reason = "job stalled more than allowable limit"
local paused = redis.call("HEXISTS", KEYS[4], "paused") == 1
local target = KEYS[2]
if paused and model == "v5" then target = KEYS[3] end
local maxLen = maxEvents(KEYS[4])
local moved, locked, over, left = {}, {}, {}, {}
local visited = 0
for i = 7, #ARGV do
  local id = ARGV[i]
  if redis.call("LINDEX", KEYS[1], -1) ~= id then break end
  visited = visited + 1
  local jobKey = prefix .. id
  if redis.call("EXISTS", jobKey .. ":lock") == 1 then
    redis.call("RPOPLPUSH", KEYS[1], KEYS[1])
    locked[#locked + 1] = id
  else
    redis.call("RPOP", KEYS[1])
    left[#left + 1] = id
    local count = redis.call("HINCRBY", jobKey, field, 1)
    local overLimit = false
    if count > maxStalled then
      overLimit = true
      local rjk = redis.call("HGET", jobKey, "rjk")
      if rjk and (redis.call("EXISTS", KEYS[7] .. ":" .. rjk) == 1 or redis.call("ZSCORE", KEYS[7], rjk)) then
        overLimit = false
      end
    end
    if overLimit then over[#over + 1] = id end
    if overLimit and failMode == "fail" then
      redis.call("ZADD", KEYS[8], now, id)
      redis.call("HSET", jobKey, "failedReason", reason, "finishedOn", now)
      redis.call("XADD", KEYS[6], "*", "event", "failed", "jobId", id, "failedReason", reason, "prev", "active")
    else
      if overLimit then redis.call("HSET", jobKey, "defa", reason) end
      redis.call("XADD", KEYS[6], "*", "event", "waiting", "jobId", id, "prev", "active")
      redis.call("XADD", KEYS[6], "*", "event", "stalled", "jobId", id)
      moved[#moved + 1] = id
    end
  end
end
-- in their original order to the tail of the target list (RPUSH, as BullMQ), and no longer candidates of
-- BullMQ's own next stalled check; at most 7000 arguments per command
for from = 1, #moved, 7000 do
  redis.call("RPUSH", target, unpack(moved, from, math.min(from + 6999, #moved)))
end
for from = 1, #left, 7000 do
  redis.call("SREM", KEYS[9], unpack(left, from, math.min(from + 6999, #left)))
end
if #left > 0 then
  -- events: trimmed once per batch, as BullMQ trims once per pass
  redis.call("XTRIM", KEYS[6], "MAXLEN", "~", maxLen)
end
if #moved > 0 then
  local isPaused, isMaxed = pausedOrMaxed(KEYS[4], KEYS[1])
  if not isPaused and not isMaxed then redis.call("ZADD", KEYS[5], 0, "0") end
end
return {moved, locked, over, visited}
"""

# Move up to ARGV[3] jobs of a sorted set (failed, completed or delayed) with score <= ARGV[2]
# back to waiting, as BullMQ's retryJobs / promoteJobs do.
# KEYS: 1 source zset, 2 wait, 3 paused, 4 meta, 5 active, 6 marker, 7 events, 8 prioritized, 9 pc
# ARGV: 1 job key prefix, 2 max score, 3 count, 4 previous state, 5 data model (v5 | v6)
# Returns the moved ids.
MOVE_SET_TO_WAIT = _PAUSED_OR_MAXED + r'''
local prefix = ARGV[1]
local prev = ARGV[4]
local jobs = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[2], "LIMIT", 0, tonumber(ARGV[3]))
if #jobs == 0 then return jobs end
local isPaused, isMaxed = pausedOrMaxed(KEYS[4], KEYS[5])
local target = KEYS[2]
if isPaused and ARGV[5] == "v5" then target = KEYS[3] end
local maxLen = maxEvents(KEYS[4])
local ready = false
for _, id in ipairs(jobs) do
  local jobKey = prefix .. id
  redis.call("ZREM", KEYS[1], id)
  if prev == "failed" then
    redis.call("HDEL", jobKey, "finishedOn", "processedOn", "failedReason")
  elseif prev == "completed" then
    redis.call("HDEL", jobKey, "finishedOn", "processedOn", "returnvalue")
  elseif prev == "delayed" then
    redis.call("HSET", jobKey, "delay", 0)
  end
  local priority = tonumber(redis.call("HGET", jobKey, "priority")) or 0
  if priority > 0 then
    local counter = redis.call("INCR", KEYS[9])
    redis.call("ZADD", KEYS[8], priority * 0x100000000 + counter % 0x100000000, id)
  else
    redis.call("LPUSH", target, id)
  end
  ready = true
  redis.call("XADD", KEYS[7], "*", "event", "waiting", "jobId", id, "prev", prev)
end
redis.call("XTRIM", KEYS[7], "MAXLEN", "~", maxLen)
if ready and not isPaused and not isMaxed then redis.call("ZADD", KEYS[6], 0, "0") end
return jobs
'''

# Delete up to ARGV[3] finished jobs (completed or failed) whose score (finishedOn) <= ARGV[2],
# with their keys, as BullMQ's clean does.
# KEYS: 1 zset, 2 events, 3 meta
# ARGV: 1 job key prefix, 2 max score, 3 count, 4 deduplication key prefix (<prefix>:<name>:de:)
# Returns the deleted ids.
CLEAN_SET = r'''
local prefix = ARGV[1]
local jobs = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[2], "LIMIT", 0, tonumber(ARGV[3]))
for _, id in ipairs(jobs) do
  local jobKey = prefix .. id
  local dedup = redis.call("HGET", jobKey, "deid")
  if dedup then
    local dedupKey = ARGV[4] .. dedup
    if redis.call("GET", dedupKey) == id then redis.call("DEL", dedupKey) end
  end
  redis.call("DEL", jobKey, jobKey .. ":logs", jobKey .. ":dependencies", jobKey .. ":processed",
             jobKey .. ":failed", jobKey .. ":unsuccessful", jobKey .. ":lock")
  redis.call("ZREM", KEYS[1], id)
end
if #jobs > 0 then
  local maxLen = tonumber(redis.call("HGET", KEYS[3], "opts.maxLenEvents")) or 10000
  redis.call("XADD", KEYS[2], "MAXLEN", "~", maxLen, "*", "event", "cleaned", "count", #jobs)
end
return jobs
'''

# Pause or resume one step. Sets / clears meta.paused, moves at most ARGV[3] ids from the source
# list head to the destination tail (RENAME when the destination does not exist), and when the
# source is empty handles the marker and emits the event. Returns the ids left in the source.
# KEYS: 1 source list, 2 destination list, 3 meta, 4 prioritized, 5 events, 6 delayed, 7 marker
# ARGV: 1 paused | resumed, 2 move (1 = move source to destination, 0 = flag only), 3 chunk size
PAUSE_RESUME = r'''
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
