-- extend: renew leases that are still held by the given tokens (heartbeat).
-- KEYS: lease keys, one per job
-- ARGV: 1 lease ms, then one token per key
-- Returns: {now_ms, ok_1, ..., ok_n} with ok 1 = renewed, 0 = lease lost (not touched).
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
