-- expire: jobs whose start deadline passed while they waited or were delayed end dead
-- ("expired before start"), counted in meta.expired apart from failures (the reaper).
-- (controls prelude)
-- KEYS: 1 todos, 2 delayed, 3 dead, 4.. the control block (CTL_N keys), then one job hash per id,
--       then the reply record
-- ARGV: the ids (the reaper read them from deadlines, due first)
-- Returns: {jobs that ended dead past their deadline, jobs that ended dead because a
-- job they were enqueued after failed (their deadline is 0: see ctl_dependents)}. Each
-- id is re-checked: still waiting or delayed, and its deadline passed by Redis time; a
-- job that started is left alone (only its stale deadline entry is dropped).
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(4)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, unmet = 0, 0
for i, id in ipairs(ARGV) do
  local job = KEYS[3 + CTL_N + i]
  local at = tonumber(redis.call('ZSCORE', CTL.deadlines, id))
  if at and at <= now then
    local waiting = redis.call('SISMEMBER', KEYS[1], id) == 1
    if waiting then
      ctl_unwait(id)
      redis.call('SREM', KEYS[1], id)
    end
    if waiting or redis.call('ZREM', KEYS[2], id) == 1 then
      local doom = ctl_doom(id)
      if doom then unmet = unmet + 1 else n = n + 1 end
      ctl_expire(id, job, KEYS[3], now, doom)
    else
      redis.call('ZREM', CTL.deadlines, id)
    end
  end
end
return answer({n, unmet}, n + unmet > 0)
