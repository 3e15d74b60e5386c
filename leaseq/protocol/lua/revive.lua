-- revive: give dead jobs a fresh set of attempts and put them back in todos.
-- (controls prelude)
-- KEYS: 1 dead, 2 todos, 3 wake, 4.. the control block (CTL_N keys), then one job hash per id, then
--       the reply record
-- ARGV: the ids
-- Returns: number of jobs moved. Ids not in dead, and dead ids whose hash has no task
-- (nothing could run them), are left where they are.
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(4)
local moved = 0
for i, id in ipairs(ARGV) do
  local job = KEYS[3 + CTL_N + i]
  if redis.call('SISMEMBER', KEYS[1], id) == 1 and redis.call('HEXISTS', job, 'task') == 1 then
    redis.call('SMOVE', KEYS[1], KEYS[2], id)
    redis.call('HSET', job, 'attempts', 0, 'failures', 0, 'expiries', 0)
    redis.call('HDEL', job, 'dead_reason', 'finished_at', 'settled', 'outcome', 'settled_by',
      'expires_at')
    ctl_wait(id, false)
    moved = moved + 1
  end
end
if moved > 0 then
  ctl_push_wake(KEYS[3], 1)
end
return answer(moved, moved > 0)
