-- taskstats: add a worker's per-task counters of the last few seconds to the minute's
-- totals.
-- KEYS: 1 taskstats:<minute> (hash), 2 the reply record
-- ARGV: 1 seconds the minute's hash lives, 2 seconds the reply record lives, then field,
--       increment pairs; a field is
--       "<task>\31<counter>" (task names hold no control characters): counters are
--       acked, failed, dead and d<bucket> (handler durations, see leaseq/protocol/taskstats.py)
-- Returns: 1, or 0 for a re-sent call (the reply record exists: counted already).
-- The reply record outlives every retry of the flush (the client keeps an unconfirmed
-- flush for at most 64 intervals), so a re-sent flush (its reply lost) counts nothing
-- twice.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
