-- results: store the results of a batch of acks; a command of the ack's MULTI.
-- KEYS: 1.. the acked jobs' hashes
-- ARGV: per job three values, in KEYS order: its encoded result, finished_at (ms, Redis
-- time), the token of the lease it was acked with
-- Returns: the number of job hashes written.
-- One command for the batch, so the client reads one QUEUED reply, not one per job.
-- Sent as EVAL with its source, never EVALSHA: inside MULTI a NOSCRIPT comes back in the
-- EXEC reply after the rest of the ack committed, which would leave done jobs without
-- their results (and a waiter woken by the same EXEC reading none).
for i = 1, #KEYS do
  local a = 3 * i
  redis.call('HSET', KEYS[i], 'result', ARGV[a - 2], 'finished_at', ARGV[a - 1],
             'settled', ARGV[a], 'settled_by', 'ack')
end
return #KEYS
