-- configure: store a queue's scheduling controls (ordering and limits) in its settings.
-- KEYS: 1 settings, 2 todos, 3 in_progress, 4 delayed, 5 active, 6 parked
-- ARGV: 1 mode: 'nx' stores only the fields not stored yet (a process naming controls
--       a queue does not have yet), 'set' replaces them (Queue.configure); then
--       field/value pairs, value '' = remove the field
-- Returns: {status, field, value, ...}: status 'ok', or 'busy' when the ordering would
--   change while the queue holds waiting, delayed or running jobs (nothing written: the
--   claim index of a fifo queue holds exactly its waiting jobs, so the ordering of a
--   queue with jobs cannot change); then the settings hash as stored now.
-- Idempotent: a re-sent call stores the same values again.
local mode = ARGV[1]
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'ordering' then
    local stored = redis.call('HGET', KEYS[1], 'ordering') or 'set'
    local wanted = ARGV[i + 1] == '' and 'set' or ARGV[i + 1]
    local applies = mode == 'set' or not redis.call('HGET', KEYS[1], 'ordering')
    if applies and stored ~= wanted and (redis.call('SCARD', KEYS[2]) > 0
        or redis.call('SCARD', KEYS[3]) > 0 or redis.call('ZCARD', KEYS[4]) > 0) then
      local out = {'busy'}
      for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
      return out
    end
  end
end
for i = 2, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if mode == 'set' or redis.call('HEXISTS', KEYS[1], field) == 0 then
    if value == '' then
      redis.call('HDEL', KEYS[1], field)
    else
      redis.call('HSET', KEYS[1], field, value)
    end
  end
end
-- Changed limits apply to parked keys too: each is looked at again by the next claim
-- (one that is still at its limit parks again), so none waits on a limit that is gone.
if mode == 'set' and redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('ZUNIONSTORE', KEYS[5], 2, KEYS[5], KEYS[6], 'WEIGHTS', 1, 0, 'AGGREGATE', 'MIN')
  redis.call('DEL', KEYS[6])
end
local out = {'ok'}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
return out
