-- results: store the results of a batch of acks; a command of the ack's MULTI.
-- KEYS: 1 done_at, 2 the lifecycle event stream, 3.. the acked jobs' hashes
-- ARGV: 1 the stream's length (XADD MAXLEN ~), or '' when the queue records no events;
-- then per job four values, in KEYS order: its id, its encoded result, the token of the
-- lease it was acked with, its attempt
-- Returns: the number of job hashes written.
-- One command for the batch, so the client reads one QUEUED reply, not one per job (nor
-- one per job's acked event).
-- finished_at and the done_at score are Redis's clock, read here: an estimate made by the
-- worker could put a job's end after the start of a job that waited for it.
-- Sent as EVAL with its source, never EVALSHA: inside MULTI a NOSCRIPT comes back in the
-- EXEC reply after the rest of the ack committed, which would leave done jobs without
-- their results (and a waiter woken by the same EXEC reading none).
-- Sent short (scripts.RESULTS_SENT: no comments, no indentation), since Redis hashes it
-- per call; the text stays readable here.
local t = redis.call('TIME')
-- Text once: Lua formats a number argument as a float each time it is sent (so is the
-- stream's length, passed on as the text it came as).
local now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
local events = ARGV[1] ~= '' and ARGV[1]
local scored = {}
for i = 3, #KEYS do
  local a = 4 * i - 10  -- the job's values: id, result, token, attempt
  local id = ARGV[a]
  redis.call('HSET', KEYS[i], 'result', ARGV[a + 1], 'finished_at', now,
             'settled', ARGV[a + 2], 'settled_by', 'ack')
  if events then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', events, '*', 'type', 'acked', 'job', id,
               'attempt', ARGV[a + 3])
  end
  scored[#scored + 1] = now
  scored[#scored + 1] = id
  -- unpack() is bounded by Lua's C stack (8,000 values): ZADD in slices.
  if #scored == 2000 then
    redis.call('ZADD', KEYS[1], unpack(scored))
    scored = {}
  end
end
if #scored > 0 then redis.call('ZADD', KEYS[1], unpack(scored)) end
return #KEYS - 2
