-- settle: end a lease other than by ack: fail (retry or dead), release, bury, or cancel.
-- (controls prelude)
-- KEYS: 1 lease, 2 job hash, 3 in_progress, 4 todos, 5 delayed, 6 dead, 7 wake,
--       8.. the control block (CTL_N keys)
-- ARGV: 1 id, 2 token, 3 mode ('fail' | 'release' | 'bury' | 'cancel'), 4 error text,
--       5 retry delay ms (fail only; 0 = straight back to todos),
--       6 a lower cap on attempts for this failure ('' = the job's own max_attempts)
-- Returns: the outcome: 'todo', 'delayed', 'dead' or 'cancelled'; 'lost' when the token
-- does not hold the lease. A lease with a cancel pending (value '<token>!', cancel.lua)
-- is still its holder's to settle, and whatever the mode the job ends cancelled; mode
-- 'cancel' is only for such a lease ('lost' otherwise). A retried call (same token, same mode) whose first attempt already settled
-- this lease returns that first outcome again (idempotent), never a second move: even
-- after the job was claimed and settled again meanwhile, since the job hash keeps the
-- last HISTORY settlements in its 'settles' field ("token:mode:outcome;" entries,
-- newest first) besides the last one in 'settled'/'outcome'/'settled_by'.
local HISTORY = 8
local id, token, mode = ARGV[1], ARGV[2], ARGV[3]
local held = redis.call('GET', KEYS[1])
local cancel = held == token .. '!'
if (held ~= token or mode == 'cancel') and not cancel then
  local s = redis.call('HMGET', KEYS[2], 'settled', 'outcome', 'settled_by', 'settles')
  if s[1] == token and s[3] == mode then return s[2] end
  if s[4] then
    local mark = ';' .. token .. ':' .. mode .. ':'
    local history = ';' .. s[4]
    local at = string.find(history, mark, 1, true)
    if at then
      local from = at + #mark
      return string.sub(history, from, string.find(history, ';', from, true) - 1)
    end
  end
  return 'lost'
end
ctl_init(8)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Counters are read and written back as numbers (no HINCRBY): a corrupt field must not
-- fail the script after its first write.
local c = redis.call('HMGET', KEYS[2], 'attempts', 'max_attempts', 'failures', 'releases')
local attempts = tonumber(c[1]) or 0
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], id)
ctl_unhold(id)
local outcome
if cancel then
  outcome = 'cancelled'
elseif mode == 'release' then
  redis.call('HSET', KEYS[2], 'attempts', ctl_int(math.max(attempts - 1, 0)),
    'releases', ctl_int((tonumber(c[4]) or 0) + 1))
  outcome = 'todo'
elseif mode == 'bury' then
  redis.call('HSET', KEYS[2], 'dead_reason', ARGV[4])
  outcome = 'dead'
else
  local failures = (tonumber(c[3]) or 0) + 1
  redis.call('HSET', KEYS[2], 'failures', ctl_int(failures), 'error', ARGV[4])
  local max_attempts = tonumber(c[2]) or 1
  if tonumber(ARGV[6]) then max_attempts = math.min(max_attempts, tonumber(ARGV[6])) end
  if attempts >= max_attempts then
    redis.call('HSET', KEYS[2], 'dead_reason',
      'failed ' .. ctl_int(failures) .. ' times, last error: ' .. ARGV[4])
    outcome = 'dead'
  elseif tonumber(ARGV[5]) > 0 then
    outcome = 'delayed'
  else
    outcome = 'todo'
  end
end
if mode == 'fail' and outcome ~= 'cancelled' then
  ctl_event('failed', id, {'attempt', attempts, 'error', ARGV[4], 'outcome', outcome})
end
if outcome == 'todo' or outcome == 'delayed' then
  ctl_event(mode == 'release' and 'released' or 'retried', id, {'attempt', attempts})
else
  ctl_event(outcome, id, {'reason', mode})
end
if outcome == 'todo' then
  redis.call('SADD', KEYS[4], id)
  -- A release gives the job back its place; a retry enters as new work.
  ctl_wait(id, mode == 'release')
  ctl_push_wake(KEYS[7], 1)
elseif outcome == 'delayed' then
  redis.call('ZADD', KEYS[5], ctl_int(now + tonumber(ARGV[5])), id)
elseif outcome == 'cancelled' then
  redis.call('SADD', CTL.cancelled, id)
  redis.call('HSET', KEYS[2], 'finished_at', ctl_int(now))
  ctl_finished(id, 'cancelled')
else
  redis.call('SADD', KEYS[6], id)
  redis.call('HSET', KEYS[2], 'finished_at', ctl_int(now))
  ctl_finished(id, 'dead')
end
local history = token .. ':' .. mode .. ':' .. outcome .. ';'
  .. (redis.call('HGET', KEYS[2], 'settles') or '')
local kept, cut = 0, #history
for i = 1, #history do
  if string.byte(history, i) == 59 then  -- ';' ends an entry
    kept = kept + 1
    if kept == HISTORY then cut = i break end
  end
end
redis.call('HSET', KEYS[2], 'settled', token, 'outcome', outcome, 'settled_by', mode,
  'settles', string.sub(history, 1, cut))
return outcome
