-- The reply-record prelude, put in front of every script whose header says
-- "(reply-record prelude)": the last KEY is the call's reply record (reply:<nonce>).
-- A call re-sent after its reply was lost finds the record and answers what the first
-- run did, doing nothing again; answer(v, changed) stores the reply (for 60 s) when the
-- run changed something, and returns it.
local saved = redis.call('GET', KEYS[#KEYS])
if saved then return cjson.decode(saved) end
local function answer(v, changed)
  if changed then redis.call('SET', KEYS[#KEYS], cjson.encode(v), 'PX', 60000) end
  return v
end
