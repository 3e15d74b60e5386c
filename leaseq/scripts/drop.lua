-- drop: delete waiting or delayed jobs for good (an operator's queue purge).
-- KEYS: 1 todos, 2 delayed, then one job hash per id, then the reply record
-- ARGV: the ids
-- Returns: number of jobs deleted. Ids no longer waiting or delayed (claimed since,
-- say) are left alone: running jobs are never touched.
-- The last KEY is this call's reply record (reply:<nonce>): a call re-sent after its
-- reply was lost finds it and answers what the first run did, doing nothing again.
local saved = redis.call('GET', KEYS[#KEYS])
if saved then return cjson.decode(saved) end
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('SREM', KEYS[1], id) + redis.call('ZREM', KEYS[2], id) > 0 then
    redis.call('DEL', KEYS[2 + i])
    n = n + 1
  end
end
if n > 0 then redis.call('SET', KEYS[#KEYS], cjson.encode(n), 'PX', 60000) end
return n
