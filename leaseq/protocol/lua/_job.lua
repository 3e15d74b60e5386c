-- The job-creation prelude, put in front of every script whose header says
-- "(job-creation prelude)" (after the controls prelude, which it uses): writing a new
-- job's hash and placing its id, the one way a job comes into being (enqueue.lua,
-- tick.lua); a caller runs flush_jobs(todos_key) after its last create_job.
-- Cut like the controls prelude (protocol/prelude.py): statements at column 0.
-- create_job(job_key, id, task, payload, max_attempts, delay_ms, lease_ms, now,
--            delayed_key, trace, priority, key, expires, waits, dead_key): lease_ms ''
-- is the queue's default; a delay > 0 puts the id in delayed (due at now + delay), else
-- in todos (at flush_jobs); trace (the producer's trace context, '' = none) is stored
-- as the job's `trace`; priority and key place it in a fifo queue (0 and '' are the
-- defaults); expires is the start deadline: '' none, '+<ms>' that long from now, else
-- Redis ms. waits (nil: none) says what the job waits for: {failed = reason} (a
-- dependency failed: it is created dead, in dead_key), {pending = ids, policy = 'd'|'a',
-- deps = ...} (it waits in blocked) or {deps = ...} (they are all done: it waits for
-- nothing); deps is the JSON list of the ids, stored as the job's `after`. Returns 1
-- when the id went to todos (a worker should be woken), else 0.
-- What create_job adds to todos and to the fifo index is sent in bulk by flush_jobs, which
-- every caller runs before it returns: one SADD, HSET and ZADD per 1,000 jobs instead of
-- one each per job (Redis's cost per call, not per member, was half of a batch's time).
-- Nothing between reads those keys: a duplicate id in the same call is found by its hash.
local JOBS = {todos = {}, placed = {}, waiting = {}}

local function flush_jobs(todos)
  ctl_bulk('SADD', todos, JOBS.todos, 1)
  ctl_bulk('HSET', CTL.placed, JOBS.placed, 2)
  ctl_bulk('ZADD', CTL.waiting, JOBS.waiting, 2)
  JOBS = {todos = {}, placed = {}, waiting = {}}
end

local function create_job(job, id, task, payload, max_attempts, delay_ms, lease_ms, now,
                          delayed, trace, priority, key, expires, waits, dead_key)
  -- One HSET of every field: a command per optional field costs a batch of a million
  -- jobs seconds of server time.
  local fields = {'task', task, 'payload', payload, 'max_attempts', max_attempts,
                  'enqueued_at', ctl_int(now)}
  if lease_ms ~= '' then fields[#fields + 1] = 'lease_ms'; fields[#fields + 1] = lease_ms end
  if trace ~= '' then fields[#fields + 1] = 'trace'; fields[#fields + 1] = trace end
  if priority ~= '0' then
    fields[#fields + 1] = 'priority'; fields[#fields + 1] = priority
  end
  if key ~= '' then fields[#fields + 1] = 'key'; fields[#fields + 1] = key end
  if expires ~= '' then
    local at = tonumber(expires)
    if string.sub(expires, 1, 1) == '+' then at = now + tonumber(string.sub(expires, 2)) end
    at = ctl_int(at)
    fields[#fields + 1] = 'expires_at'; fields[#fields + 1] = at
    redis.call('ZADD', CTL.deadlines, at, id)
  end
  if waits then
    fields[#fields + 1] = 'after'; fields[#fields + 1] = waits.deps or ''
  end
  redis.call('HSET', job, unpack(fields))
  ctl_event('enqueued', id, {'task', task})
  if waits and waits.failed then
    redis.call('HSET', job, 'dead_reason', waits.failed, 'finished_at', ctl_int(now))
    redis.call('SADD', dead_key, id)
    if expires ~= '' then redis.call('ZREM', CTL.deadlines, id) end
    ctl_event('dead', id, {'reason', waits.failed})
    return 0
  end
  if waits and waits.pending then
    ctl_new(id, priority, key, false)
    for _, dep in ipairs(waits.pending) do
      redis.call('ZADD', CTL.dependents, '0', dep .. SEP .. id)
    end
    redis.call('HSET', CTL.after, id, ctl_int(#waits.pending) .. SEP .. waits.policy)
    redis.call('SADD', CTL.blocked, id)
    return 0
  end
  local delay = tonumber(delay_ms)
  if delay > 0 then
    ctl_new(id, priority, key, false)
    redis.call('ZADD', delayed, ctl_int(now + delay), id)
    return 0
  end
  if CTL.fifo then  -- ctl_rank's writes, in bulk
    local placed, member = ctl_ranked(id, priority, key)
    local n = #JOBS.placed
    JOBS.placed[n + 1], JOBS.placed[n + 2] = id, placed
    JOBS.waiting[n + 1], JOBS.waiting[n + 2] = '0', member
  end
  JOBS.todos[#JOBS.todos + 1] = id
  return 1
end
