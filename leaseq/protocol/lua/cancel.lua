-- cancel: cancel a job, from any process.
-- (reply-record prelude, controls prelude)
-- KEYS: 1 todos, 2 in_progress, 3 done, 4 dead, 5 delayed, 6 the job hash, 7 the lease,
--       8.. the control block (CTL_N keys), then the reply record
-- ARGV: 1 id, 2 reason, 3 'PUBLISH' or 'SPUBLISH' (on a cluster), 4 the cancels channel
-- Returns: 'cancelled' (it waited, was delayed or blocked: now in cancelled),
--   'delivered' (it runs: the cancel is bound to the lease that holds it now, and
--   published to the workers), 'finished' (done, dead or cancelled already) or
--   'unknown'.
-- A running job's cancel is bound to its lease: the lease key's value becomes
-- '<token>!' (its expiry kept), so the holder's ack (WATCH) and extend no longer match
-- its token and only a settle by that holder, which then ends the job cancelled, or the
-- reaper, once the lease expired, can end it. The job hash keeps cancel_token, so a
-- later claim of the id (a new lease, a new token) is not affected by this cancel.
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(8)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, reason = ARGV[1], ARGV[2]
local job = KEYS[6]

local function to_cancelled()
  ctl_finished(id, 'cancelled')
  ctl_event('cancelled', id, {'reason', reason})
  redis.call('SADD', CTL.cancelled, id)
  redis.call('HSET', job, 'cancel_reason', reason, 'finished_at', now)
  redis.call('ZREM', CTL.deadlines, id)
  if ctl_uses_after() then redis.call('HDEL', CTL.after, id) end
end

if redis.call('SISMEMBER', KEYS[1], id) == 1 then
  ctl_unwait(id)
  redis.call('SREM', KEYS[1], id)
  to_cancelled()
  return answer('cancelled', true)
end
if redis.call('ZREM', KEYS[5], id) == 1 or redis.call('SREM', CTL.blocked, id) == 1 then
  to_cancelled()
  return answer('cancelled', true)
end
if redis.call('SISMEMBER', KEYS[2], id) == 1 then
  local held = redis.call('GET', KEYS[7])
  local token = held
  if held and string.sub(held, -1) == '!' then token = string.sub(held, 1, -2) end
  if not token then
    -- The lease expired and no reaper has run yet: bind the cancel to the last claim,
    -- which the reaper then ends cancelled instead of requeueing it.
    token = redis.call('HGET', job, 'token')
  end
  if token then
    redis.call('HSET', job, 'cancel_token', token, 'cancel_reason', reason)
    if held == token then redis.call('SET', KEYS[7], token .. '!', 'KEEPTTL') end
    redis.call(ARGV[3], ARGV[4], id .. ' ' .. token)
    ctl_event('cancel_requested', id, {'token', token, 'reason', reason})
  end
  return answer('delivered', true)
end
if redis.call('SISMEMBER', KEYS[3], id) == 1 or redis.call('SISMEMBER', KEYS[4], id) == 1
    or redis.call('SISMEMBER', CTL.cancelled, id) == 1 then
  return answer('finished', false)
end
return answer('unknown', false)
