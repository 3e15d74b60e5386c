-- progress: store a running job's progress, fenced by its lease.
-- (controls prelude)
-- KEYS: 1 the lease, 2 the job hash, 3.. the control block (CTL_N keys)
-- ARGV: 1 id, 2 token, 3 the progress (JSON: fraction, message, data), 4 'PUBLISH' or
--       'SPUBLISH', 5 the progress channel
-- Returns: 1 stored, 0 refused (the token no longer holds the lease: a stale holder's
--   progress never overwrites the new holder's). A lease with a cancel pending is still
--   its holder's. Idempotent: a re-sent call stores the same value again.
-- The value gets the Redis time it was stored at ('at', ms) and is published on the
-- queue's progress channel as '<id> <json>', for dashboards and event readers.
ctl_init(3)
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[2] and held ~= ARGV[2] .. '!' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local value = cjson.decode(ARGV[3])
value.at = now
local stored = cjson.encode(value)
redis.call('HSET', KEYS[2], 'progress', stored)
redis.call(ARGV[4], ARGV[5], ARGV[1] .. ' ' .. stored)
ctl_event('progress', ARGV[1], {'progress', stored})
return 1
