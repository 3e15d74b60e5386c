-- enqueue: create jobs that do not exist yet; an existing id is left untouched (dedup).
-- (controls prelude: ctl_wake; job-creation prelude: create_job, flush_jobs)
-- KEYS: 1 todos, 2 in_progress, 3 done, 4 dead, 5 delayed, 6 wake, 7.. the control
--       block (CTL_N keys); on a cluster also one job hash per job, in ARGV order
-- ARGV: 1 '1' when the ids were freshly generated (random), '0' for caller-given ids;
--       2 the trace context to store with every job ('' = none); 3 the key prefix
--       "leaseq:{NAME}:", or '' on a cluster (the job hashes are then declared);
--       4 task, 5 max_attempts, 6 delay_ms, 7 lease_ms ('' = queue default), 8 priority,
--       9 key, 10 start deadline (see create_job): the same for every job of the call;
--       11 the policy of the dependencies ('d': a failed one makes the job end dead,
--       'a': it runs anyway; '' when there are none), 12 d = the number of ids the jobs
--       wait for (after=), then those d ids; then 2 fields per job: id, payload
-- A job enqueued after others waits in blocked until every one of them is done
-- (docs/protocol.md, "Dependencies"); one already done counts as done, one dead or
-- cancelled as failed. An id that is no job of this queue fails the call with
-- 'ERR LEASEQ_UNKNOWN_DEPENDENCY <id>' before anything is written.
-- Returns: one integer per job: 1 created, 0 already known (nothing written).
-- KEYS 1 to 5 and the control block name every set an id can be in.
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
local policy = ARGV[11]
local nd = tonumber(ARGV[12])
-- Where each dependency is, before anything is written.
local pending, failed = {}, nil
for j = 13, 12 + nd do
  local dep = ARGV[j]
  if redis.call('SISMEMBER', KEYS[3], dep) == 1 then
    -- done: nothing to wait for
  elseif redis.call('SISMEMBER', KEYS[4], dep) == 1
      or redis.call('SISMEMBER', CTL.cancelled, dep) == 1 then
    if policy ~= 'a' and not failed then
      local state = redis.call('SISMEMBER', KEYS[4], dep) == 1 and 'dead' or 'cancelled'
      failed = 'dependency ' .. dep .. ' ended ' .. state
    end
  elseif redis.call('SISMEMBER', KEYS[1], dep) == 1
      or redis.call('SISMEMBER', KEYS[2], dep) == 1 or redis.call('ZSCORE', KEYS[5], dep)
      or redis.call('SISMEMBER', CTL.blocked, dep) == 1 then
    pending[#pending + 1] = dep
  else
    return redis.error_reply('LEASEQ_UNKNOWN_DEPENDENCY ' .. dep)
  end
end
local waits = nil
-- Stored with each job as a JSON list (ids may hold spaces). A loop, not unpack: Lua
-- unpacks at most ~8,000 values and a job may wait for 10,000.
local deps = ''
if nd > 0 then
  local ids = {}
  for j = 13, 12 + nd do ids[#ids + 1] = ARGV[j] end
  deps = cjson.encode(ids)
end
if failed then
  waits = {failed = failed, deps = deps}
elseif #pending > 0 then
  waits = {pending = pending, policy = policy, deps = deps}
  if redis.call('EXISTS', CTL.uses_after) == 0 then redis.call('SET', CTL.uses_after, '1') end
elseif nd > 0 then
  waits = {deps = deps}  -- all done: it waits for nothing, and says what it was after
end
for i = 13 + nd, #ARGV, 2 do
  local id = ARGV[i]
  local job = prefix .. 'job:' .. id
  if prefix == '' then job = KEYS[6 + CTL_N + (i - 11 - nd) / 2] end
  -- The hash marks a known job; for caller-given ids the set checks guard against a hash
  -- deleted behind the queue's back, which must not put one id in two sets.
  if redis.call('EXISTS', job) == 1 or (not fresh and (
    redis.call('SISMEMBER', KEYS[1], id) == 1
    or redis.call('SISMEMBER', KEYS[2], id) == 1
    or redis.call('SISMEMBER', KEYS[3], id) == 1
    or redis.call('SISMEMBER', KEYS[4], id) == 1
    or redis.call('SISMEMBER', CTL.cancelled, id) == 1
    or redis.call('SISMEMBER', CTL.blocked, id) == 1
    or redis.call('ZSCORE', KEYS[5], id))) then
    out[#out + 1] = 0
  else
    woken = woken + create_job(job, id, ARGV[4], ARGV[i + 1], ARGV[5], ARGV[6], ARGV[7],
      now, KEYS[5], ARGV[2], ARGV[8], ARGV[9], ARGV[10], waits, KEYS[4])
    out[#out + 1] = 1
  end
end
flush_jobs(KEYS[1])
ctl_wake(woken)
return out
