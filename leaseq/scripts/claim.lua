-- claim: take up to n jobs from todos, each with a fresh lease, in one atomic step.
-- KEYS: 1 todos, 2 in_progress, 3 dead, 4 delayed, 5 wake, 6 fence;
--       on a cluster also the m candidates' job hashes, then their lease keys
-- ARGV: 1 key prefix "leaseq:{NAME}:", or '' on a cluster, 2 n, 3 default lease ms,
--       4 nonce, 5 owner name; on a cluster also the m candidate ids (the caller picked
--       them with SRANDMEMBER; m may be 0)
-- Returns: {now_ms, fence_base, entries...} where each entry is 8 fields:
--   id, token, attempt, task, payload, max_attempts, lease_ms, status
--   status 'ok' = leased; 'dead' = the job hash was missing or corrupt, id moved to dead.
-- On a plain server the ids are chosen here and their keys (job hash, lease) built from
-- the prefix: one round trip, and concurrent claimers never race for an id. On a cluster
-- every key a script touches must be declared: while the slot migrates, Redis checks
-- only the declared keys before the script runs, and an undeclared key found on the
-- other node fails the script halfway (an id moved without its lease). There the caller
-- names candidates and their keys, and a candidate another claimer took is skipped.
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

-- Choosing and moving in one script: no id ever sits in in_progress without its lease.
local picked = {}
local m = #ARGV - 5
if prefix == '' then
  for i = 1, m do
    local id = ARGV[5 + i]
    if #picked < n and redis.call('SMOVE', KEYS[1], KEYS[2], id) == 1 then
      picked[#picked + 1] = {id, KEYS[6 + i], KEYS[6 + m + i]}
    end
  end
else
  for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[1], n)) do
    redis.call('SMOVE', KEYS[1], KEYS[2], id)
    picked[#picked + 1] = {id, prefix .. 'job:' .. id, prefix .. 'lease:' .. id}
  end
end
local out = {now, 0}
if #picked > 0 then
  local fence = redis.call('INCRBY', KEYS[6], #picked) - #picked
  out[2] = fence
  for i, p in ipairs(picked) do
    local id, job, lease = p[1], p[2], p[3]
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
      redis.call('PSETEX', lease, lease_ms, token)
      redis.call('HSET', job, 'token', token, 'owner', ARGV[5], 'claimed_at', now)
      for _, v in ipairs({id, token, attempt, f[1], f[2], f[3], lease_ms, 'ok'}) do
        out[#out + 1] = v
      end
    end
  end
end
-- An empty todos makes any wake tokens stale; dropping them keeps idle workers asleep.
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[5])
end
return out
