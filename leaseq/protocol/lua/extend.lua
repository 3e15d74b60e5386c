-- extend: renew leases that are still held by the given tokens (heartbeat).
-- (controls prelude)
-- KEYS: 1..11 the control block, then the lease keys, one per job
-- ARGV: 1 lease ms, then one token per lease key
-- Returns: {now_ms, ok_1, ..., ok_n} with ok 1 = renewed, 0 = lease lost (not touched).
-- A renewed lease that holds a concurrency slot moves the slot's expiry with it.
ctl_init(1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
local ms = tonumber(ARGV[1])
-- lease keys are '<prefix>lease:<id>', and the settings key is '<prefix>settings'
local skip = #CTL.settings - #'settings' + #'lease:' + 1
for i = 12, #KEYS do
  local key = KEYS[i]
  if redis.call('GET', key) == ARGV[i - 10] then
    redis.call('PEXPIRE', key, ms)
    if CTL.holding then
      redis.call('ZADD', CTL.holds, 'XX', now + ms, string.sub(key, skip))
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
