-- stats: sizes of a queue's sets, and the jobs acked in the last minute, in one step.
-- KEYS: 1 todos, 2 in_progress, 3 done, 4 dead, 5 delayed, 6 done_at, 7 meta
-- ARGV: none
-- Returns: {todos, in_progress, done, dead, delayed, done in the last 60 s, epoch or false}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {
  redis.call('SCARD', KEYS[1]), redis.call('SCARD', KEYS[2]), redis.call('SCARD', KEYS[3]),
  redis.call('SCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]),
  redis.call('ZCOUNT', KEYS[6], '(' .. (now - 60000), '+inf'),
  redis.call('HGET', KEYS[7], 'epoch'),
}
