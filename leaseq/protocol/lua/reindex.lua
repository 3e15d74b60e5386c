-- reindex: make the scheduling controls agree with the sets again for the given ids
-- (`leaseq doctor --repair`), re-checking each first.
-- (controls prelude)
-- KEYS: 1 todos, 2 in_progress, 3.. the control block (CTL_N keys), then the reply record
-- ARGV: the ids, then, after a '' separator, the fifo index entries to check
-- Returns: number of entries changed. An id of todos missing from the fifo index is
-- indexed (with its old rank when it has one); an index entry whose id is not in todos
-- is dropped; a hold whose id is not in in_progress is freed (ctl_unhold).
-- The last KEY is this call's reply record (reply-record prelude, scripts/_reply.lua:
-- a re-sent call answers what the first run did; answer() stores the reply).
ctl_init(3)
local changed = 0
local i = 1
while ARGV[i] and ARGV[i] ~= '' do
  local id = ARGV[i]
  if CTL.fifo and redis.call('SISMEMBER', KEYS[1], id) == 1 then
    local _, key, rank = ctl_place(id)
    if not (rank and redis.call('ZSCORE', CTL.waiting, ctl_member(key, rank, id))) then
      ctl_wait(id, true)
      changed = changed + 1
    end
  end
  if redis.call('SISMEMBER', KEYS[2], id) == 0 and redis.call('ZSCORE', CTL.holds, id) then
    ctl_unhold(id)
    changed = changed + 1
  end
  i = i + 1
end
for j = i + 1, #ARGV do
  local entry = ARGV[j]
  local id = string.match(entry, '^.*\31(.*)$')
  if id and redis.call('SISMEMBER', KEYS[1], id) == 0
      and redis.call('ZREM', CTL.waiting, entry) == 1 then
    changed = changed + 1
  end
end
return answer(changed, changed > 0)
