-- drop: delete waiting or delayed jobs for good (an operator's queue purge).
-- (controls prelude)
-- KEYS: 1 todos, 2 delayed, 3.. the control block (CTL_N keys), then one job hash per id, then the
--       reply record
-- ARGV: the ids
-- Returns: number of jobs deleted. Ids no longer waiting or delayed (claimed since,
-- say) are left alone: running jobs are never touched.
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(3)
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('SISMEMBER', KEYS[1], id) == 1 then ctl_unwait(id) end
  if redis.call('SREM', KEYS[1], id) + redis.call('ZREM', KEYS[2], id) > 0 then
    redis.call('DEL', KEYS[2 + CTL_N + i])
    ctl_forget(id)
    ctl_finished(id, 'deleted')
    n = n + 1
  end
end
return answer(n, n > 0)
