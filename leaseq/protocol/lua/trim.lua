-- trim: forget done jobs beyond the retention (older than max age, or beyond max count).
-- KEYS: 1 done, 2 done_at (zset id -> finish ms); on a cluster also the m candidates'
--       job hashes; last, the reply record
-- ARGV: 1 key prefix, or '' on a cluster, 2 max age ms (-1 = none), 3 max count
--       (-1 = none), 4 batch size; on a cluster also the m candidate ids, the oldest of
--       done_at as the caller read them
-- Returns: {forgotten, examined}; examined == batch means there may be more.
-- Both rules select the oldest entries of done_at, so a batch is a prefix of it, and the
-- first entry neither rule selects ends the batch. On a plain server the batch is read
-- here and the job hashes' keys built from the prefix; on a cluster every key must be
-- declared (see claim.lua), so the caller names the candidates and each is re-checked.
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[1]
local max_age = tonumber(ARGV[2])
local max_count = tonumber(ARGV[3])
local batch = tonumber(ARGV[4])
local ids = {}
if prefix == '' then
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[2], 0, batch - 1)
end
local excess = -1
if max_count >= 0 then excess = redis.call('ZCARD', KEYS[2]) - max_count end
local n = 0
for i, id in ipairs(ids) do
  local score = tonumber(redis.call('ZSCORE', KEYS[2], id))
  if score then  -- a named candidate may have gone meanwhile
    if excess <= 0 and not (max_age >= 0 and score <= now - max_age) then
      return answer({n, i - 1}, n > 0)
    end
    redis.call('ZREM', KEYS[2], id)
    excess = excess - 1
    -- Only a job that is still done is forgotten; a re-enqueued id keeps its hash.
    if redis.call('SREM', KEYS[1], id) == 1 then
      local job = KEYS[2 + i]
      if prefix ~= '' then job = prefix .. 'job:' .. id end
      redis.call('DEL', job)
      n = n + 1
    end
  end
end
return answer({n, #ids}, n > 0)
