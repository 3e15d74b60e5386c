-- enqueue: create jobs that do not exist yet; an existing id is left untouched (dedup).
-- (controls prelude; job-creation prelude: create_job, wake)
-- KEYS: 1 todos, 2 in_progress, 3 done, 4 dead, 5 delayed, 6 wake, 7..18 the control
--       block; on a cluster also one job hash per job, in ARGV order
-- ARGV: 1 '1' when the ids were freshly generated (random), '0' for caller-given ids;
--       2 the trace context to store with every job ('' = none); 3 the key prefix
--       "leaseq:{NAME}:", or '' on a cluster (the job hashes are then declared);
--       4 task, 5 max_attempts, 6 delay_ms, 7 lease_ms ('' = queue default), 8 priority,
--       9 key, 10 start deadline (see create_job): the same for every job of the call;
--       then 2 fields per job: id, payload
-- Returns: one integer per job: 1 created, 0 already known (nothing written).
-- The job hash's existence is the dedup check for every id: a call re-sent after its
-- reply was lost (redis-py retries on connection errors) finds the hashes its first run
-- wrote and changes nothing, whatever happened to those jobs in between. Caller-given ids
-- are also looked up in the sets, for a hash deleted behind the queue's back.
-- What is the same for every job is sent once: a batch costs two arguments per job, not
-- ten (the client packs every argument in Python).
-- On a plain server the job hashes' keys are built from the prefix, as claim.lua does;
-- on a cluster every key a script touches is declared (see claim.lua).
ctl_init(7)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local woken = 0
local fresh = ARGV[1] == '1'
local prefix = ARGV[3]
for i = 11, #ARGV, 2 do
  local id = ARGV[i]
  local job = prefix .. 'job:' .. id
  if prefix == '' then job = KEYS[6 + CTL_N + (i - 9) / 2] end
  -- The hash marks a known job; for caller-given ids the set checks guard against a hash
  -- deleted behind the queue's back, which must not put one id in two sets.
  if redis.call('EXISTS', job) == 1 or (not fresh and (
    redis.call('SISMEMBER', KEYS[1], id) == 1
    or redis.call('SISMEMBER', KEYS[2], id) == 1
    or redis.call('SISMEMBER', KEYS[3], id) == 1
    or redis.call('SISMEMBER', KEYS[4], id) == 1
    or redis.call('SISMEMBER', CTL.cancelled, id) == 1
    or redis.call('ZSCORE', KEYS[5], id))) then
    out[#out + 1] = 0
  else
    woken = woken + create_job(job, id, ARGV[4], ARGV[i + 1], ARGV[5], ARGV[6], ARGV[7],
      now, KEYS[1], KEYS[5], ARGV[2], ARGV[8], ARGV[9], ARGV[10])
    out[#out + 1] = 1
  end
end
wake(KEYS[6], woken)
return out
