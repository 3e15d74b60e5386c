-- candidates: the ids a fifo claim would take first, for a cluster claim to name (see
-- claim.lua: there every key a script touches is declared, so the caller names them).
-- (controls prelude)
-- KEYS: 1.. the control block (CTL_N keys)
-- ARGV: 1 n
-- Returns: up to 4n ids: the first waiting jobs of the keys whose turn is next (the
-- round-robin's first n keys and the parked keys due again), 4n per key at most (jobs
-- found expired at the claim take no lease, so a key's first n may not be enough).
-- Reads only: a candidate another claimer takes first is skipped by the claim.
ctl_init(1)
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keys = redis.call('ZRANGEBYSCORE', CTL.parked, '-inf', now, 'LIMIT', 0, n)
for _, key in ipairs(redis.call('ZRANGE', CTL.active, 0, n - 1)) do keys[#keys + 1] = key end
local out = {}
for _, key in ipairs(keys) do
  local entries = redis.call('ZRANGEBYLEX', CTL.waiting, '[' .. key .. SEP,
                             '(' .. key .. '\32', 'LIMIT', 0, 4 * n)
  for _, entry in ipairs(entries) do
    out[#out + 1] = string.sub(entry, #key + 19)
    if #out >= 4 * n then return out end
  end
end
return out
