-- purge: delete dead (or cancelled) jobs for good.
-- (controls prelude)
-- KEYS: 1 dead (or cancelled), 2.. the control block (CTL_N keys), then one job hash per
--       id, then the reply record
-- ARGV: the ids
-- Returns: number of jobs deleted (ids not in KEYS[1] are left alone).
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(2)
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('DEL', KEYS[1 + CTL_N + i])
    ctl_forget(id)
    ctl_finished(id, 'deleted')
    n = n + 1
  end
end
return answer(n, n > 0)
