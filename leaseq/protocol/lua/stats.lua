-- stats: sizes of a queue's sets, the jobs acked in the last minute, and the state of
-- its scheduling controls, in one step.
-- (controls prelude)
-- KEYS: 1 todos, 2 in_progress, 3 done, 4 dead, 5 delayed, 6 done_at, 7 meta,
--       8.. the control block (CTL_N keys)
-- ARGV: none
-- Returns: {todos, in_progress, done, dead, delayed, done in the last 60 s, epoch or
--   false, paused (0/1), ordering, leases holding a slot, jobs waiting on a limit,
--   keys that may be served, keys parked, jobs expired before start, jobs cancelled,
--   jobs blocked (waiting for the jobs they were enqueued after)}
ctl_init(8)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local todos = redis.call('SCARD', KEYS[1])
local holding = 0
if CTL.holding then holding = redis.call('ZCOUNT', CTL.holds, '(' .. now, '+inf') end
local blocked = 0
local queue_held = CTL.paused or (CTL.max_in_flight and holding >= CTL.max_in_flight)
if not queue_held and CTL.rate then
  local room = ctl_room('q', CTL.rate, 1, now)
  queue_held = room == 0
end
if queue_held then
  blocked = todos
elseif CTL.fifo then
  for _, key in ipairs(redis.call('ZRANGE', CTL.parked, 0, 999)) do
    blocked = blocked + redis.call('ZLEXCOUNT', CTL.waiting, '[' .. key .. SEP,
                                   '(' .. key .. '\32')
  end
end
return {
  todos, redis.call('SCARD', KEYS[2]), redis.call('SCARD', KEYS[3]),
  redis.call('SCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]),
  redis.call('ZCOUNT', KEYS[6], '(' .. (now - 60000), '+inf'),
  redis.call('HGET', KEYS[7], 'epoch'),
  CTL.paused and 1 or 0, CTL.fifo and 'fifo' or 'set', holding, blocked,
  redis.call('ZCARD', CTL.active), redis.call('ZCARD', CTL.parked),
  tonumber(redis.call('HGET', KEYS[7], 'expired')) or 0,
  redis.call('SCARD', CTL.cancelled), redis.call('SCARD', CTL.blocked),
}
