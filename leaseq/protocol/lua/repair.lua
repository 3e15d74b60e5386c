-- repair: fix one integrity problem found by `leaseq doctor --repair`, re-checking it first.
-- KEYS: 1 todos, 2 in_progress, 3 done, 4 dead, 5 delayed, 6 done_at, 7 wake,
--       8 the job hash, 9 the lease key, 10.. the control block (CTL_N keys), then the reply record
-- (controls prelude)
-- ARGV: 1 kind, 2 id
--   kind 'orphan_lease': a lease key whose id is not in in_progress -> deleted
--   kind 'orphan_job':   a job hash whose id is in no set -> back to done (if it was acked)
--                        or to todos (it would otherwise be lost); a hash with no task is
--                        deleted (nothing could run it)
--   kind 'missing_hash': an id in a set with no job hash -> out of done, or to dead
-- Returns: 1 if something was changed, 0 if the problem was gone.
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(10)
local kind, id = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function in_any_set()
  for i = 1, 4 do
    if redis.call('SISMEMBER', KEYS[i], id) == 1 then return true end
  end
  return redis.call('ZSCORE', KEYS[5], id) ~= false
    or redis.call('SISMEMBER', CTL.cancelled, id) == 1
    or redis.call('SISMEMBER', CTL.blocked, id) == 1
end
if kind == 'orphan_lease' then
  if redis.call('SISMEMBER', KEYS[2], id) == 0 and redis.call('EXISTS', KEYS[9]) == 1 then
    redis.call('DEL', KEYS[9])
    return answer(1, true)
  end
elseif kind == 'orphan_job' then
  if redis.call('EXISTS', KEYS[8]) == 1 and not in_any_set() then
    local f = redis.call('HMGET', KEYS[8], 'task', 'settled_by')
    if f[2] == 'ack' then
      redis.call('SADD', KEYS[3], id)
      redis.call('ZADD', KEYS[6], now, id)
    elseif f[1] then
      redis.call('SADD', KEYS[1], id)
      ctl_wait(id, true)
      ctl_push_wake(KEYS[7], 1)
    else
      redis.call('DEL', KEYS[8])
    end
    return answer(1, true)
  end
elseif kind == 'missing_hash' then
  if redis.call('EXISTS', KEYS[8]) == 0 then
    if redis.call('SREM', KEYS[3], id) == 1 then
      redis.call('ZREM', KEYS[6], id)
      return answer(1, true)
    end
    if redis.call('SISMEMBER', KEYS[1], id) == 1 then ctl_unwait(id) end
    local moved = redis.call('SREM', KEYS[1], id) + redis.call('ZREM', KEYS[5], id)
      + redis.call('SREM', CTL.blocked, id)
    redis.call('HDEL', CTL.after, id)
    if redis.call('SISMEMBER', KEYS[2], id) == 1 and redis.call('EXISTS', KEYS[9]) == 0 then
      moved = moved + redis.call('SREM', KEYS[2], id)
    end
    if moved > 0 then
      redis.call('SADD', KEYS[4], id)
      redis.call('HSET', KEYS[8], 'dead_reason', 'job hash missing (found by doctor)',
        'finished_at', now)
      return answer(1, true)
    end
  end
end
return 0
