-- promote: move delayed jobs whose due time has come to todos.
-- KEYS: 1 delayed, 2 todos, 3 wake, 4 meta
-- ARGV: 1 batch size
-- Also stamps meta.reaper_seen (Redis ms): every sweep calls this script at least once,
-- so dashboards can tell whether any reaper is running.
-- Returns: number of jobs promoted (a full batch means there may be more).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[4], 'reaper_seen', now)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then return 0 end
redis.call('ZREM', KEYS[1], unpack(due))
redis.call('SADD', KEYS[2], unpack(due))
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, 63)
return #due
