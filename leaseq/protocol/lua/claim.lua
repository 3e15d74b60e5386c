-- claim: take up to n jobs from todos, each with a fresh lease, in one atomic step.
-- KEYS: 1 todos, 2 in_progress, 3 dead, 4 delayed, 5 wake, 6 fence, 7 the claim record
--       (claim:<nonce>); on a cluster also the m candidates' job hashes, then their
--       lease keys
-- ARGV: 1 key prefix "leaseq:{NAME}:", or '' on a cluster, 2 n, 3 default lease ms,
--       4 nonce, 5 owner name, 6 k = number of per-task attempt limits, then k pairs
--       task, limit (a worker's Task(max_attempts=...)); on a cluster also the m
--       candidate ids (the caller picked them with SRANDMEMBER, or, to recover a claim,
--       read them from its record)
-- Returns: {now_ms, fence_base, recovered, entries...}; recovered is 1 when the record
--   of this nonce already existed (a re-sent call) and the entries are that claim's.
--   Each entry is 9 fields: id, token, attempt, task, payload, max_attempts, lease_ms,
--   ms left on the lease, status
--   status 'ok' = leased; 'dead' = the job hash was missing or corrupt, id moved to dead;
--   'gone' (recovery only) = the lease of the recorded claim is no longer held.
-- A call re-sent after its reply was lost (redis-py retries on connection errors) finds
-- the record of its nonce and answers with the same leases instead of claiming more:
-- without it the first call's leases would be held by nobody and cost their jobs an
-- attempt. The record (ids and fence base) lives as long as the longest of its leases.
-- On a plain server the ids are chosen here and their keys (job hash, lease) built from
-- the prefix: one round trip, and concurrent claimers never race for an id. On a cluster
-- every key a script touches must be declared: while the slot migrates, Redis checks
-- only the declared keys before the script runs, and an undeclared key found on the
-- other node fails the script halfway (an id moved without its lease). There the caller
-- names candidates and their keys, and a candidate another claimer took is skipped.
-- A per-task limit lower than the job's own max_attempts is stored with the job at its
-- claim, so the reaper, inspect and the dashboard all see the limit that applies.
-- Nothing stored can fail the script after its first move: every field is checked
-- before it is used (a bad lease_ms falls back to the default, a bad count or a key of
-- the wrong type sends the job to dead).
local MAX_MS = 315360000000  -- ten years, the longest lease the client accepts
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local default_ms = tonumber(ARGV[3])
if not (default_ms and default_ms >= 1 and default_ms <= MAX_MS) then default_ms = 30000 end
local nonce = ARGV[4]
local caps = {}
local first = 7 + 2 * tonumber(ARGV[6])  -- index of the first candidate id
for i = 7, first - 1, 2 do caps[ARGV[i]] = tonumber(ARGV[i + 1]) end
local m = #ARGV - first + 1

local function keys_of(id, i)
  if prefix == '' then return KEYS[7 + i], KEYS[7 + m + i] end
  return prefix .. 'job:' .. id, prefix .. 'lease:' .. id
end

-- A stored count: digits only (tonumber would also take '1.0', '1e1', '0x5' or ' 5',
-- which HINCRBY and the client refuse), short enough to be exact.
local function is_count(v)
  return type(v) == 'string' and #v <= 15 and string.match(v, '^%d+$') ~= nil
end

local record = redis.call('GET', KEYS[7])
if record then
  local r = cjson.decode(record)
  local named = {}
  for i = 1, m do named[ARGV[first - 1 + i]] = i end
  local out = {now, r[1], 1}
  for j = 2, #r, 2 do
    local slot, id = r[j], r[j + 1]
    local job, lease
    if prefix == '' then
      local i = named[id]
      if i then job, lease = keys_of(id, i) end
    else
      job, lease = keys_of(id, 0)
    end
    local token = (r[1] + slot) .. '-' .. nonce
    local entry = {id, token, 0, '', '', 0, 0, 0, 'gone'}
    if lease and redis.call('GET', lease) == token then
      local f = redis.call('HMGET', job, 'task', 'payload', 'max_attempts', 'lease_ms',
                           'attempts')
      local lease_ms = tonumber(f[4]) or default_ms
      entry = {id, token, tonumber(f[5]) or 0, f[1] or '', f[2] or '', f[3] or 0, lease_ms,
               redis.call('PTTL', lease), 'ok'}
    end
    for _, v in ipairs(entry) do out[#out + 1] = v end
  end
  return out
end

-- Promote due delayed jobs first (bounded), so delays work even without a reaper.
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 256)
if #due > 0 then
  redis.call('ZREM', KEYS[4], unpack(due))
  redis.call('SADD', KEYS[1], unpack(due))
end

-- Choose first (reads only), then move: no id ever sits in in_progress without its lease.
local picked = {}
if prefix == '' then
  local seen = {}
  for i = 1, m do
    local id = ARGV[first - 1 + i]
    if #picked < n and not seen[id] and redis.call('SISMEMBER', KEYS[1], id) == 1 then
      seen[id] = true
      local job, lease = keys_of(id, i)
      picked[#picked + 1] = {id, job, lease}
    end
  end
else
  for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[1], n)) do
    local job, lease = keys_of(id, 0)
    picked[#picked + 1] = {id, job, lease}
  end
end
local out = {now, 0, 0}
if #picked == 0 then
  if redis.call('SCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[5]) end
  return out
end
local fence = redis.call('INCRBY', KEYS[6], #picked) - #picked
out[2] = fence
local rec = {fence}
local longest = 0
for i, p in ipairs(picked) do
  local id, job, lease = p[1], p[2], p[3]
  local f = redis.pcall('HMGET', job, 'task', 'payload', 'max_attempts', 'lease_ms',
                        'attempts')
  local wrong_type = type(f) == 'table' and f.err ~= nil
  if wrong_type or not f[1] or not f[2] or not is_count(f[3]) or tonumber(f[3]) < 1
      or (f[5] and not is_count(f[5])) then
    redis.call('SMOVE', KEYS[1], KEYS[3], id)
    if not wrong_type then
      local reason = 'job hash missing at claim'
      if redis.call('EXISTS', job) == 1 then reason = 'job hash corrupt at claim' end
      redis.call('HSET', job, 'dead_reason', reason, 'finished_at', now)
    end
    for _, v in ipairs({id, '', 0, '', '', 0, 0, 0, 'dead'}) do out[#out + 1] = v end
  else
    local lease_ms = default_ms
    if is_count(f[4]) and tonumber(f[4]) >= 1 and tonumber(f[4]) <= MAX_MS then
      lease_ms = tonumber(f[4])
    end
    local max_attempts = f[3]
    local cap = caps[f[1]]
    if cap and cap < tonumber(max_attempts) then
      max_attempts = cap
      redis.call('HSET', job, 'max_attempts', cap)
    end
    redis.call('SMOVE', KEYS[1], KEYS[2], id)
    local attempt = redis.call('HINCRBY', job, 'attempts', 1)
    local token = (fence + i) .. '-' .. nonce
    redis.call('PSETEX', lease, lease_ms, token)
    redis.call('HSET', job, 'token', token, 'owner', ARGV[5], 'claimed_at', now)
    rec[#rec + 1] = i
    rec[#rec + 1] = id
    if lease_ms > longest then longest = lease_ms end
    for _, v in ipairs({id, token, attempt, f[1], f[2], max_attempts, lease_ms, lease_ms,
                        'ok'}) do
      out[#out + 1] = v
    end
  end
end
if longest > 0 then
  redis.call('SET', KEYS[7], cjson.encode(rec), 'PX', longest)
end
-- An empty todos makes any wake tokens stale; dropping them keeps idle workers asleep.
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[5])
end
return out
