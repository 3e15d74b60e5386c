-- tick: one tick of a periodic schedule, at most once whatever the number of schedulers.
-- (controls prelude: ctl_wake; job-creation prelude: create_job, flush_jobs)
-- KEYS: 1 the schedule's state (schedule:<name>), 2 todos, 3 in_progress, 4 delayed,
--       5 done, 6 dead, 7 wake, 8 the tick's job hash, 9.. the control block (CTL_N keys)
-- ARGV: 1 the state's last tick as the caller read it ('' = none yet), 2 mode:
--       'run' enqueue the tick's job, 'missed' record ARGV[10] ticks up to this one as
--       skipped (every scheduler was down), 'baseline' start the schedule at this tick;
--       3 the tick (ms, Unix time), 4 the job id, 5 task, 6 payload, 7 max_attempts,
--       8 lease_ms ('' = queue default), 9 overlap ('allow' or 'skip'), 10 count
-- Returns: 'raced' (the last tick is no longer ARGV[1]: another scheduler, or this very
--   call before a lost reply, got there first; nothing written), 'baseline', 'missed',
--   'overlap' (skipped: the schedule's previous job is still waiting or running),
--   'known' (the job id exists already; the tick is recorded) or 'enqueued'.
-- The last tick is a compare-and-set: each tick is decided once, by the first call that
-- reads the state it expects, so two schedulers (or a re-sent call) never enqueue one
-- tick twice, even after its job was done and forgotten.
ctl_init(9)
local state = KEYS[1]
local last = redis.call('HGET', state, 'last_tick')
local tick = ARGV[3]
if (last or '') ~= ARGV[1] or (last and tonumber(tick) <= tonumber(last)) then
  return 'raced'
end
local mode = ARGV[2]
if mode == 'baseline' then
  redis.call('HSET', state, 'last_tick', tick)
  return 'baseline'
end
if mode == 'missed' then
  redis.call('HSET', state, 'last_tick', tick, 'last_skipped_tick', tick,
    'last_skip_reason', 'missed')
  redis.call('HINCRBY', state, 'skipped_missed', tonumber(ARGV[10]))
  return 'missed'
end
local id = ARGV[4]
if ARGV[9] == 'skip' then
  local previous = redis.call('HGET', state, 'last_job')
  if previous and (redis.call('SISMEMBER', KEYS[2], previous) == 1
      or redis.call('SISMEMBER', KEYS[3], previous) == 1
      or redis.call('ZSCORE', KEYS[4], previous)) then
    redis.call('HSET', state, 'last_tick', tick, 'last_skipped_tick', tick,
      'last_skip_reason', 'overlap')
    redis.call('HINCRBY', state, 'skipped_overlap', 1)
    return 'overlap'
  end
end
local job = KEYS[8]
if redis.call('EXISTS', job) == 1
    or redis.call('SISMEMBER', KEYS[2], id) == 1
    or redis.call('SISMEMBER', KEYS[3], id) == 1
    or redis.call('SISMEMBER', KEYS[5], id) == 1
    or redis.call('SISMEMBER', KEYS[6], id) == 1
    or redis.call('SISMEMBER', CTL.cancelled, id) == 1
    or redis.call('ZSCORE', KEYS[4], id) then
  redis.call('HSET', state, 'last_tick', tick)
  return 'known'
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local woken = create_job(job, id, ARGV[5], ARGV[6], ARGV[7], '0', ARGV[8], now, KEYS[4],
  '', '0', '', '')
flush_jobs(KEYS[2])
ctl_wake(woken)
redis.call('HSET', state, 'last_tick', tick, 'last_job', id)
redis.call('HINCRBY', state, 'enqueued', 1)
return 'enqueued'
