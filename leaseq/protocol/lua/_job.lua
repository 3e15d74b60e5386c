-- The job-creation prelude, put in front of every script whose header says
-- "(job-creation prelude)" (after the controls prelude, which it uses): writing a new
-- job's hash and placing its id, the one way a job comes into being (enqueue.lua,
-- tick.lua).
-- create_job(job_key, id, task, payload, max_attempts, delay_ms, lease_ms, now,
--            todos_key, delayed_key, trace, priority, key, expires): lease_ms '' is the
-- queue's default; a delay > 0 puts the id in delayed (due at now + delay), else in
-- todos; trace (the producer's trace context, '' = none) is stored as the job's `trace`;
-- priority and key place it in a fifo queue (0 and '' are the defaults); expires is the
-- start deadline: '' none, '+<ms>' that long from now, else Redis ms. waits (nil: none)
-- says what the job waits for: {failed = reason} (a dependency failed: it is created
-- dead, in dead_key), {pending = ids, policy = 'd'|'a', deps = ...} (it waits in
-- blocked) or {deps = ...} (they are all done: it waits for nothing); deps is the JSON
-- list of the ids, stored as the job's `after`. Returns 1 when the id went to todos (a
-- worker should be woken), else 0.
local function create_job(job, id, task, payload, max_attempts, delay_ms, lease_ms, now,
                          todos, delayed, trace, priority, key, expires, waits, dead_key)
  -- One HSET of every field: a command per optional field costs a batch of a million
  -- jobs seconds of server time.
  local fields = {'task', task, 'payload', payload, 'max_attempts', max_attempts,
                  'enqueued_at', now}
  if lease_ms ~= '' then fields[#fields + 1] = 'lease_ms'; fields[#fields + 1] = lease_ms end
  if trace ~= '' then fields[#fields + 1] = 'trace'; fields[#fields + 1] = trace end
  if priority ~= '0' then
    fields[#fields + 1] = 'priority'; fields[#fields + 1] = priority
  end
  if key ~= '' then fields[#fields + 1] = 'key'; fields[#fields + 1] = key end
  if expires ~= '' then
    local at = tonumber(expires)
    if string.sub(expires, 1, 1) == '+' then at = now + tonumber(string.sub(expires, 2)) end
    fields[#fields + 1] = 'expires_at'; fields[#fields + 1] = at
    redis.call('ZADD', CTL.deadlines, at, id)
  end
  if waits then
    fields[#fields + 1] = 'after'; fields[#fields + 1] = waits.deps or ''
  end
  redis.call('HSET', job, unpack(fields))
  ctl_event('enqueued', id, {'task', task})
  if waits and waits.failed then
    redis.call('HSET', job, 'dead_reason', waits.failed, 'finished_at', now)
    redis.call('SADD', dead_key, id)
    if expires ~= '' then redis.call('ZREM', CTL.deadlines, id) end
    ctl_event('dead', id, {'reason', waits.failed})
    return 0
  end
  if waits and waits.pending then
    ctl_new(id, priority, key, false)
    for _, dep in ipairs(waits.pending) do
      redis.call('ZADD', CTL.dependents, 0, dep .. SEP .. id)
    end
    redis.call('HSET', CTL.after, id, #waits.pending .. SEP .. waits.policy)
    redis.call('SADD', CTL.blocked, id)
    return 0
  end
  local delay = tonumber(delay_ms)
  ctl_new(id, priority, key, delay <= 0)
  if delay > 0 then
    redis.call('ZADD', delayed, now + delay, id)
    return 0
  end
  redis.call('SADD', todos, id)
  return 1
end

-- wake(wake_key, n): one wake token per new waiting job, capped: idle workers block on
-- this list. A paused queue wakes nobody (resume does).
local function wake(key, n)
  if n > 0 and not CTL.paused then
    local tokens = {}
    for _ = 1, math.min(n, 64) do tokens[#tokens + 1] = '1' end
    redis.call('LPUSH', key, unpack(tokens))
    redis.call('LTRIM', key, 0, 63)
  end
end
