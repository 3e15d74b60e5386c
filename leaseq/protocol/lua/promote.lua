-- promote: move delayed jobs whose due time has come to todos.
-- (controls prelude)
-- KEYS: 1 delayed, 2 todos, 3 wake, 4 meta, 5.. the control block (CTL_N keys), then the reply record
-- ARGV: 1 batch size
-- Also stamps meta.reaper_seen (Redis ms): every sweep calls this script at least once,
-- so dashboards can tell whether any reaper is running.
-- Returns: number of jobs promoted (a full batch means there may be more).
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(5)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[4], 'reaper_seen', now)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then return 0 end
ctl_bulk('ZREM', KEYS[1], due, 1)
ctl_bulk('SADD', KEYS[2], due, 1)
for _, id in ipairs(due) do ctl_wait(id, false) end
ctl_push_wake(KEYS[3], 1)
return answer(#due, true)
