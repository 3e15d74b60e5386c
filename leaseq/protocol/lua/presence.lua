-- presence: a live worker says it is alive (or, leaving, that it is gone).
-- KEYS: 1 workers (sorted set: worker id -> Redis ms last seen), 2 worker:<id>
-- ARGV: 1 worker id, 2 its description (JSON) or '' when it leaves, 3 time to live ms
-- Returns: Redis time in ms.
-- The description key expires with the worker: a worker SIGKILLed disappears within
-- the time to live. The sorted set is only an index; entries older than ten times to
-- live are dropped here, so it stays bounded. Re-sent after a lost reply it writes the
-- same state again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * ttl)
end
return now
