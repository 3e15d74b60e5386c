-- claim: take up to n jobs from todos, each with a fresh lease, in one atomic step.
-- KEYS: 1 todos, 2 in_progress, 3 dead, 4 delayed, 5 wake, 6 fence counter
-- ARGV: 1 key prefix "leaseq:{NAME}:", 2 n, 3 default lease ms, 4 nonce, 5 owner name
-- Returns: {now_ms, fence_base, entries...} where each entry is 8 fields:
--   id, token, attempt, task, payload, max_attempts, lease_ms, status
--   status 'ok' = leased; 'dead' = the job hash was missing or corrupt, id moved to dead.
-- The per-job keys (job hash, lease) are built here from the prefix because the ids are
-- chosen here; they carry the queue's hash tag, so they live in the slot of KEYS.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[1]
local n = tonumber(ARGV[2])

-- Promote due delayed jobs first (bounded), so delays work even without a reaper.
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 256)
if #due > 0 then
  redis.call('ZREM', KEYS[4], unpack(due))
  redis.call('SADD', KEYS[1], unpack(due))
end

-- Choosing and moving in one script: concurrent claimers never race for the same id.
local ids = redis.call('SRANDMEMBER', KEYS[1], n)
local out = {now, 0}
if #ids == 0 then
  redis.call('DEL', KEYS[5])
  return out
end
local fence = redis.call('INCRBY', KEYS[6], #ids) - #ids
out[2] = fence
for i, id in ipairs(ids) do
  redis.call('SMOVE', KEYS[1], KEYS[2], id)
  local job = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job, 'task', 'payload', 'max_attempts', 'lease_ms')
  if not f[1] or not f[2] or not tonumber(f[3]) then
    redis.call('SMOVE', KEYS[2], KEYS[3], id)
    local reason = 'job hash missing at claim'
    if redis.call('EXISTS', job) == 1 then reason = 'job hash corrupt at claim' end
    redis.call('HSET', job, 'dead_reason', reason, 'finished_at', now)
    for _, v in ipairs({id, '', 0, '', '', 0, 0, 'dead'}) do out[#out + 1] = v end
  else
    local attempt = redis.call('HINCRBY', job, 'attempts', 1)
    local lease_ms = tonumber(f[4]) or tonumber(ARGV[3])
    local token = (fence + i) .. '-' .. ARGV[4]
    redis.call('PSETEX', prefix .. 'lease:' .. id, lease_ms, token)
    redis.call('HSET', job, 'token', token, 'owner', ARGV[5], 'claimed_at', now)
    for _, v in ipairs({id, token, attempt, f[1], f[2], f[3], lease_ms, 'ok'}) do
      out[#out + 1] = v
    end
  end
end
-- An empty todos makes any wake tokens stale; dropping them keeps idle workers asleep.
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[5])
end
return out
