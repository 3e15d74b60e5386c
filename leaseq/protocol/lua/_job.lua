-- The job-creation prelude, put in front of every script whose header says
-- "(job-creation prelude)": writing a new job's hash and placing its id, the one way a
-- job comes into being (enqueue.lua, tick.lua).
-- create_job(job_key, id, task, payload, max_attempts, delay_ms, lease_ms, now,
--            todos_key, delayed_key, trace): lease_ms '' is the queue's default; a delay
-- > 0 puts the id in delayed (due at now + delay), else in todos; trace (the producer's
-- trace context, '' = none) is stored as the job's `trace`. Returns 1 when the id went
-- to todos (a worker should be woken), else 0.
local function create_job(job, id, task, payload, max_attempts, delay_ms, lease_ms, now,
                          todos, delayed, trace)
  redis.call('HSET', job, 'task', task, 'payload', payload,
    'max_attempts', max_attempts, 'enqueued_at', now)
  if lease_ms ~= '' then
    redis.call('HSET', job, 'lease_ms', lease_ms)
  end
  if trace ~= '' then
    redis.call('HSET', job, 'trace', trace)
  end
  local delay = tonumber(delay_ms)
  if delay > 0 then
    redis.call('ZADD', delayed, now + delay, id)
    return 0
  end
  redis.call('SADD', todos, id)
  return 1
end

-- wake(wake_key, n): one wake token per new waiting job, capped: idle workers block on
-- this list.
local function wake(key, n)
  if n > 0 then
    local tokens = {}
    for _ = 1, math.min(n, 64) do tokens[#tokens + 1] = '1' end
    redis.call('LPUSH', key, unpack(tokens))
    redis.call('LTRIM', key, 0, 63)
  end
end
