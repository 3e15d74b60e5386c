-- purge: delete dead jobs for good.
-- KEYS: 1 dead, then one job hash per id, then the reply record
-- ARGV: the ids
-- Returns: number of jobs deleted (ids not in dead are left alone).
-- The last KEY is this call's reply record (reply:<nonce>): a call re-sent after its
-- reply was lost finds it and answers what the first run did, doing nothing again.
local saved = redis.call('GET', KEYS[#KEYS])
if saved then return cjson.decode(saved) end
local function answer(v, changed)
  if changed then redis.call('SET', KEYS[#KEYS], cjson.encode(v), 'PX', 60000) end
  return v
end
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('DEL', KEYS[1 + i])
    n = n + 1
  end
end
return answer(n, n > 0)
