-- reap: requeue (or bury) jobs of in_progress whose lease has expired; repair leases
-- without an expiry. Called by the reaper with one SSCAN batch of ids.
-- (controls prelude)
-- KEYS: 1 in_progress, 2 todos, 3 dead, 4 wake, 5 events, 6.. the control block (CTL_N keys), then
--       n lease keys, then n job hashes, then the reply record
-- ARGV: 1 lease ms to give a lease key found without expiry, 2 events to keep, then the
--       n ids
-- Returns: {requeued, dead, repaired, cancelled, dead ids...} (cancelled: a cancel was
-- bound to the expired lease, so the job ends cancelled instead of being requeued)
-- Each expired lease is recorded in the events list (newest first, capped): dashboards
-- show it, and it is the only trace of a claimer that died without a word.
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(6)
local n = #ARGV - 2
local events = 0
local requeued, dead, repaired, cancels = 0, 0, 0, 0
local dead_ids = {}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
  local id = ARGV[i + 2]
  local lease = KEYS[5 + CTL_N + i]
  local job = KEYS[5 + CTL_N + n + i]
  -- Re-check membership: SSCAN may return an id that was settled since.
  if redis.call('SISMEMBER', KEYS[1], id) == 1 then
    local ttl = redis.call('PTTL', lease)
    if ttl == -1 then
      redis.call('PEXPIRE', lease, ARGV[1])
      repaired = repaired + 1
    elseif ttl == -2 then
      -- Read and checked before anything is written: a corrupt field or a key of the
      -- wrong type must not stop the batch (nor every later sweep) halfway.
      local f = redis.pcall('HMGET', job, 'attempts', 'max_attempts', 'failures', 'error',
                            'task', 'owner', 'token', 'claimed_at', 'expiries',
                            'cancel_token')
      local hash = not (type(f) == 'table' and f.err ~= nil)
      if not hash then f = {} end
      local reason = nil
      local expiries = 0
      if not f[5] then
        reason = 'job hash missing at reap'
      else
        expiries = math.floor(tonumber(f[9]) or 0) + 1
        redis.call('HSET', job, 'expiries', expiries)
        if (tonumber(f[1]) or 0) >= (tonumber(f[2]) or 1) then
          reason = 'lease expired ' .. expiries .. ' times'
          if (tonumber(f[3]) or 0) > 0 then
            reason = reason .. ', failed ' .. f[3] .. ' times, last error: ' .. (f[4] or '')
          end
        end
      end
      ctl_unhold(id)
      -- A cancel bound to this very lease (its holder died before it could settle):
      -- the job ends cancelled, not requeued.
      local cancelled = f[5] and f[7] and f[10] == f[7]
      if cancelled then
        redis.call('SMOVE', KEYS[1], CTL.cancelled, id)
        redis.call('HSET', job, 'finished_at', now)
        reason = 'cancelled'
        cancels = cancels + 1
        ctl_finished(id, 'cancelled')
      elseif reason then
        redis.call('SMOVE', KEYS[1], KEYS[3], id)
        if hash then redis.call('HSET', job, 'dead_reason', reason, 'finished_at', now) end
        dead = dead + 1
        dead_ids[#dead_ids + 1] = id
        ctl_finished(id, 'dead')
      else
        redis.call('SMOVE', KEYS[1], KEYS[2], id)
        ctl_wait(id, true)  -- back to its place, not behind newer work
        requeued = requeued + 1
      end
      ctl_event('lease_expired', id, {'attempt', tonumber(f[1]) or 0, 'token',
        f[7] or '', 'outcome', cancelled and 'cancelled' or (reason and 'dead' or 'requeued')})
      if cancelled then ctl_event('cancelled', id, {'reason', 'lease expired'})
      elseif reason then ctl_event('dead', id, {'reason', reason}) end
      redis.call('LPUSH', KEYS[5], cjson.encode({
        at = now, event = 'lease_expired', job_id = id, task = f[5] or false,
        attempt = tonumber(f[1]) or 0, owner = f[6] or false, token = f[7] or false,
        claimed_at = tonumber(f[8]) or false, expiries = expiries,
        outcome = cancelled and 'cancelled' or (reason and 'dead' or 'requeued'),
        reason = reason or false}))
      events = events + 1
    end
  end
end
if events > 0 then
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[2]) - 1)
end
if requeued > 0 then
  ctl_push_wake(KEYS[4], 1)
end
local out = {requeued, dead, repaired, cancels}
for _, id in ipairs(dead_ids) do out[#out + 1] = id end
return answer(out, requeued + dead + repaired + cancels > 0)
