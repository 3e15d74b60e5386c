-- promote: move delayed jobs whose due time has come to todos.
-- KEYS: 1 delayed, 2 todos, 3 wake
-- ARGV: 1 batch size
-- Returns: number of jobs promoted (a full batch means there may be more).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then return 0 end
redis.call('ZREM', KEYS[1], unpack(due))
redis.call('SADD', KEYS[2], unpack(due))
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, 63)
return #due
