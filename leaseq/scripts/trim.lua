-- trim: forget done jobs beyond the retention (older than max age, or beyond max count).
-- KEYS: 1 done, 2 done_at (zset id -> finish ms)
-- ARGV: 1 key prefix, 2 max age ms (-1 = none), 3 max count (-1 = none), 4 batch size
-- Returns: {forgotten, examined}; examined == batch means there may be more.
-- Job hashes are built from the prefix because the ids come from done_at; they carry
-- the queue's hash tag, so they live in the slot of KEYS.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local batch = tonumber(ARGV[4])
local ids = {}
local max_count = tonumber(ARGV[3])
if max_count >= 0 then
  local excess = redis.call('ZCARD', KEYS[2]) - max_count
  if excess > 0 then
    ids = redis.call('ZRANGE', KEYS[2], 0, math.min(excess, batch) - 1)
  end
end
local max_age = tonumber(ARGV[2])
if #ids < batch and max_age >= 0 then
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - max_age,
    'LIMIT', #ids, batch - #ids)
  for _, id in ipairs(old) do ids[#ids + 1] = id end
end
local n = 0
local seen = {}
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    redis.call('ZREM', KEYS[2], id)
    -- Only a job that is still done is forgotten; a re-enqueued id keeps its hash.
    if redis.call('SREM', KEYS[1], id) == 1 then
      redis.call('DEL', ARGV[1] .. 'job:' .. id)
      n = n + 1
    end
  end
end
return {n, #ids}
