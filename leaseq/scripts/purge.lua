-- purge: delete dead jobs for good.
-- KEYS: 1 dead, then one job hash per id
-- ARGV: the ids
-- Returns: number of jobs deleted (ids not in dead are left alone).
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('DEL', KEYS[1 + i])
    n = n + 1
  end
end
return n
