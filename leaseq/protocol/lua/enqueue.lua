-- enqueue: create jobs that do not exist yet; an existing id is left untouched (dedup).
-- KEYS: 1 todos, 2 in_progress, 3 done, 4 dead, 5 delayed, 6 wake, 7..17 the control
--       block, 18..17+n job hashes (one per job, in ARGV order)
-- ARGV: 1 '1' when the ids were freshly generated (random), '0' for caller-given ids;
--       2 the trace context to store with every job ('' = none); 3 '1' when each job
--       has placement fields, else '0'; then per job: id, task, payload, max_attempts,
--       delay_ms, lease_ms ('' = queue default), and with placement fields priority,
--       key, start deadline (see create_job); without them 0, '' and ''
-- Returns: one integer per job: 1 created, 0 already known (nothing written).
-- (controls prelude; job-creation prelude: create_job, wake)
-- The job hash's existence is the dedup check for every id: a call re-sent after its
-- reply was lost (redis-py retries on connection errors) finds the hashes its first run
-- wrote and changes nothing, whatever happened to those jobs in between. Caller-given ids
-- are also looked up in the sets, for a hash deleted behind the queue's back.
ctl_init(7)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local woken = 0
local fresh = ARGV[1] == '1'
local width = ARGV[3] == '1' and 9 or 6
for i = 18, #KEYS do
  local b = (i - 18) * width + 3
  local id = ARGV[b + 1]
  local job = KEYS[i]
  -- The hash marks a known job; for caller-given ids the set checks guard against a hash
  -- deleted behind the queue's back, which must not put one id in two sets.
  if redis.call('EXISTS', job) == 1 or (not fresh and (
    redis.call('SISMEMBER', KEYS[1], id) == 1
    or redis.call('SISMEMBER', KEYS[2], id) == 1
    or redis.call('SISMEMBER', KEYS[3], id) == 1
    or redis.call('SISMEMBER', KEYS[4], id) == 1
    or redis.call('ZSCORE', KEYS[5], id))) then
    out[#out + 1] = 0
  else
    local priority, key, expires = '0', '', ''
    if width == 9 then priority, key, expires = ARGV[b + 7], ARGV[b + 8], ARGV[b + 9] end
    woken = woken + create_job(job, id, ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5],
      ARGV[b + 6], now, KEYS[1], KEYS[5], ARGV[2], priority, key, expires)
    out[#out + 1] = 1
  end
end
wake(KEYS[6], woken)
return out
