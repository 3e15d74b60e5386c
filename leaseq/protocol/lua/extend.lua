-- extend: renew leases that are still held by the given tokens (heartbeat).
-- (controls prelude)
-- KEYS: 1.. the control block (CTL_N keys), then the lease keys, one per job
-- ARGV: 1 lease ms, then one token per lease key
-- Returns: {now_ms, ok_1, ..., ok_n} with ok 1 = renewed, 0 = lease lost (not touched),
-- 2 = renewed but a cancel is pending (cancel.lua): the holder should stop the job and
-- settle it, which ends it cancelled.
-- A renewed lease that holds a concurrency slot moves the slot's expiry with it.
ctl_init(1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
local ms = tonumber(ARGV[1])
-- lease keys are '<prefix>lease:<id>', and the settings key is '<prefix>settings'
local skip = #CTL.settings - #'settings' + #'lease:' + 1
for i = CTL_N + 1, #KEYS do
  local key = KEYS[i]
  local held = redis.call('GET', key)
  local token = ARGV[i - CTL_N + 1]
  if held == token or held == token .. '!' then
    redis.call('PEXPIRE', key, ctl_int(ms))  -- text: see ctl_int
    if CTL.holding then
      redis.call('ZADD', CTL.holds, 'XX', ctl_int(now + ms), string.sub(key, skip))
    end
    out[#out + 1] = held == token and 1 or 2
  else
    out[#out + 1] = 0
  end
end
return out
