-- claim: take up to n jobs from todos, each with a fresh lease, in one atomic step.
-- (controls prelude)
-- KEYS: 1 todos, 2 in_progress, 3 dead, 4 delayed, 5 wake, 6 fence, 7 the claim record
--       (claim:<nonce>), 8.. the control block (CTL_N keys); on a cluster also the m candidates'
--       job hashes, then their lease keys
-- ARGV: 1 key prefix "leaseq:{NAME}:", or '' on a cluster, 2 n, 3 default lease ms,
--       4 nonce, 5 owner name, 6 k = number of per-task attempt limits, then k pairs
--       task, limit (a worker's Task(max_attempts=...)); on a cluster also the m
--       candidate ids (the caller picked them with SRANDMEMBER or candidates.lua, or, to
--       recover a claim, read them from its record)
-- Returns: {now_ms, fence_base, recovered, state, retry_at, left, entries...}; recovered is 1
--   when the record of this nonce already existed (a re-sent call) and the entries are
--   that claim's. state says why nothing more could be claimed: '' (nothing waits, or
--   n were claimed), 'paused', 'full' (max_in_flight left fewer than n slots), 'limited'
--   (the queue's rate), 'keys' (every key with waiting jobs is at its limit); retry_at:
--   the Redis ms when a limit next lets a job start (for 'full' the earliest expiry of
--   a held lease; 0 = only a freed slot or a new job will). left: 0 when todos was
--   found empty as the call ended (so was the wake list: a later job pushes a token),
--   1 otherwise or when not looked at; an idle worker whose claim emptied todos waits
--   for work at once instead of asking again to find nothing.
--   Each entry is 11 fields: id, token, attempt, task, payload, max_attempts, lease_ms,
--   ms left on the lease, status, key, flags (1: the lease holds a concurrency slot,
--   2: the job is placed in a fifo queue; its ack must free and forget them)
--   status 'ok' = leased; 'dead' = the job hash was missing or corrupt, id moved to dead;
--   'expired' = its start deadline had passed, id moved to dead; 'unmet' = a job it was
--   enqueued after failed (docs/protocol.md, "Dependencies"), id moved to dead; 'gone'
--   (recovery only) = the lease of the recorded claim is no longer held.
-- A call re-sent after its reply was lost (redis-py retries on connection errors) finds
-- the record of its nonce and answers with the same leases instead of claiming more:
-- without it the first call's leases would be held by nobody and cost their jobs an
-- attempt. The record (ids and fence base) lives as long as the longest of its leases.
-- On a plain server the ids are chosen here and their keys (job hash, lease) built from
-- the prefix: one round trip, and concurrent claimers never race for an id. On a cluster
-- every key a script touches must be declared: while the slot migrates, Redis checks
-- only the declared keys before the script runs, and an undeclared key found on the
-- other node fails the script halfway (an id moved without its lease). There the caller
-- names candidates and their keys, and a candidate another claimer took is skipped (a
-- fifo claim stops at the first id it would take that was not named).
-- A per-task limit lower than the job's own max_attempts is stored with the job at its
-- claim, so the reaper, inspect and the dashboard all see the limit that applies.
-- Nothing stored can fail the script after its first move: every field is checked
-- before it is used (a bad lease_ms falls back to the default, a bad count or a key of
-- the wrong type sends the job to dead).
local MAX_MS = 315360000000  -- ten years, the longest lease the client accepts
ctl_init(8)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local default_ms = tonumber(ARGV[3])
if not (default_ms and default_ms >= 1 and default_ms <= MAX_MS) then default_ms = 30000 end
local nonce = ARGV[4]
local caps = {}
local first = 7 + 2 * tonumber(ARGV[6])  -- index of the first candidate id
for i = 7, first - 1, 2 do caps[ARGV[i]] = tonumber(ARGV[i + 1]) end
local m = #ARGV - first + 1
local FIELDS = 11

local function keys_of(id, i)
  if prefix == '' then return KEYS[7 + CTL_N + i], KEYS[7 + CTL_N + m + i] end
  return prefix .. 'job:' .. id, prefix .. 'lease:' .. id
end

-- A stored count: digits only (tonumber would also take '1.0', '1e1', '0x5' or ' 5',
-- which HINCRBY and the client refuse), short enough to be exact.
local function is_count(v)
  return type(v) == 'string' and #v <= 15 and string.match(v, '^%d+$') ~= nil
end

local named = {}
for i = 1, m do named[ARGV[first - 1 + i]] = i end

-- A lease's token: the fence number of its slot and the call's nonce.
local function token_of(n)
  return string.format('%d-%s', n, nonce)
end

local record = redis.call('GET', KEYS[7])
if record then
  -- Its numbers are written as '%d' text (JSON strings, see below).
  local r = cjson.decode(record)
  local base = tonumber(r[1])
  local out = {now, base, 1, '', 0, 1}
  for j = 2, #r, 2 do
    local slot, id = tonumber(r[j]), r[j + 1]
    local job, lease
    if prefix == '' then
      local i = named[id]
      if i then job, lease = keys_of(id, i) end
    else
      job, lease = keys_of(id, 0)
    end
    local token = token_of(base + slot)
    local entry = {id, token, 0, '', '', 0, 0, 0, 'gone', '', 0}
    local held = lease and redis.call('GET', lease)
    -- A cancel bound to the lease meanwhile leaves it ours: its holder ends it cancelled.
    if held == token or held == token .. '!' then
      local f = redis.call('HMGET', job, 'task', 'payload', 'max_attempts', 'lease_ms',
                           'attempts')
      local lease_ms = tonumber(f[4]) or default_ms
      local _, key = ctl_place(id)
      local held = redis.call('ZSCORE', CTL.holds, id) and 1 or 0
      if CTL.fifo then held = held + 2 end
      entry = {id, token, tonumber(f[5]) or 0, f[1] or '', f[2] or '', f[3] or 0, lease_ms,
               redis.call('PTTL', lease), 'ok', key, held}
    end
    for _, v in ipairs(entry) do out[#out + 1] = v end
  end
  return out
end

-- Promote due delayed jobs first (bounded), so delays work even without a reaper.
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ctl_int(now), 'LIMIT', '0', '256')
if #due > 0 then
  redis.call('ZREM', KEYS[4], unpack(due))
  redis.call('SADD', KEYS[1], unpack(due))
  for _, id in ipairs(due) do ctl_wait(id, false) end
end

local out = {now, 0, 0, '', 0, 1}
if CTL.paused then
  -- Wake tokens are stale until resume pushes new ones: idle workers stay asleep.
  redis.call('DEL', KEYS[5])
  out[4] = 'paused'
  return out
end

-- Slots whose lease expired are free, whether or not a reaper has run.
if CTL.holding then
  local expired = redis.call('ZRANGEBYSCORE', CTL.holds, '-inf', ctl_int(now), 'LIMIT', '0',
                             '256')
  for _, id in ipairs(expired) do
    ctl_unhold(id)
  end
end
local budget = n
if CTL.max_in_flight then
  local free = CTL.max_in_flight - redis.call('ZCARD', CTL.holds)
  if free < budget then
    -- Full, or about to be: the worker waits for a freed slot before it asks again.
    budget = math.max(free, 0)
    out[4] = 'full'
    out[5] = tonumber(redis.call('ZRANGE', CTL.holds, '0', '0', 'WITHSCORES')[2]) or 0
  end
end
if CTL.rate or CTL.key_rate then
  redis.call('ZREMRANGEBYSCORE', CTL.rates, '-inf', ctl_int(now))
end
if budget > 0 and CTL.rate then
  local room, next_at = ctl_room('q', CTL.rate, budget, now)
  budget = room
  if room == 0 then
    out[4] = 'limited'
    out[5] = next_at
  end
end

-- Choose first (reads only, but for the fifo index), then move: no id ever sits in
-- in_progress without its lease.
local picked = {}
if budget > 0 and not CTL.fifo then
  if prefix ~= '' then
    for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[1], ctl_int(budget))) do
      local job, lease = keys_of(id, 0)
      picked[#picked + 1] = {id, job, lease, ''}
    end
  else
    local seen = {}
    for i = 1, m do
      local id = ARGV[first - 1 + i]
      if #picked < budget and not seen[id] and redis.call('SISMEMBER', KEYS[1], id) == 1 then
        seen[id] = true
        local job, lease = keys_of(id, i)
        picked[#picked + 1] = {id, job, lease, ''}
      end
    end
  end
elseif budget > 0 then
  -- Keys whose time to look again has come go back to the round-robin.
  local due_keys = redis.call('ZRANGEBYSCORE', CTL.parked, '-inf', ctl_int(now), 'LIMIT', '0',
                              '64')
  for _, key in ipairs(due_keys) do
    redis.call('ZREM', CTL.parked, key)
    redis.call('ZADD', CTL.active, '0', key)
  end
  local mine = {}  -- this call's picks per key, for the key's concurrency
  -- A key's turn: the next of a block of `budget` numbers reserved once per call (the
  -- round-robin only needs them to grow; what a call leaves unused is skipped).
  local turn, turn_last = 1, 0
  local function next_turn()
    if turn > turn_last then
      turn_last = redis.call('HINCRBY', CTL.meta, 'turn', ctl_int(budget))
      turn = turn_last - budget + 1
    end
    turn = turn + 1
    return turn - 1
  end
  -- No key holds more slots than all keys together: while the holds and this call's
  -- picks stay under the per-key limit, no key's count needs reading (one ZCARD per
  -- call where a ZLEXCOUNT per pick was a tenth of a fifo claim's server time).
  local all_held = CTL.key_conc and redis.call('ZCARD', CTL.held) or 0
  local cut = false  -- stopped at a candidate the caller did not name (a cluster)
  local tries = budget * 4 + 16  -- bounded work, whatever the keys hold
  -- The round-robin, served in rounds: the next keys in turn order are read at once, and
  -- each gives one job in that order (a served key's new turn is behind every other
  -- key's, so this is serving them one at a time); the only key gives as many as it
  -- may. What a round changes in the index is written in one command each, where one
  -- key at a time cost four commands per job. A job that cannot be taken (a stale index
  -- entry, a passed deadline) ends the round at once, and the rest of the call goes one
  -- key at a time: its key is looked at again first, as one at a time would.
  local careful = false
  local drops, gone, bumps = {}, {}, {}
  -- A job with a start deadline is in `deadlines` until it is first claimed (the
  -- deadline binds only until then): with none there, no pick needs its deadline read.
  local deadlines = redis.call('ZCARD', CTL.deadlines) > 0
  local function flush()
    ctl_bulk('ZREM', CTL.waiting, drops, 1)
    ctl_bulk('ZREM', CTL.active, gone, 1)
    for _, key in ipairs(gone) do ctl_deactivated(key) end
    ctl_add_wide(CTL.active, bumps)
    drops, gone, bumps = {}, {}, {}
  end
  while #picked < budget and tries > 0 and not cut do
    local want = budget - #picked
    local tops = redis.call('ZRANGE', CTL.active, '0',
                            ctl_int(careful and 0 or math.max(want, 2) - 1))
    if #tops == 0 then break end
    local per = 1
    -- (Not under a key_rate: its room for several at once can round differently from
    -- taking them one at a time.)
    if #tops == 1 and not careful and not CTL.key_rate then per = want end
    -- Reads first: each key's first waiting entries (one more than it may give: whether
    -- it is left empty), and whether their ids are in todos.
    local round, ids = {}, {}
    for r = 1, math.min(#tops, want) do
      local key = tops[r]
      local entries = redis.call('ZRANGEBYLEX', CTL.waiting, '[' .. key .. SEP,
                                 '(' .. key .. '\32', 'LIMIT', '0', ctl_int(per + 1))
      round[r] = {key, entries}
      for j = 1, math.min(per, #entries) do
        ids[#ids + 1] = string.sub(entries[j], #key + 19)  -- after '<key>\31<16 digits>\31'
      end
    end
    local in_todos = {}
    for s = 1, #ids, 1000 do  -- slices: unpack() is bounded (see ctl_bulk)
      local e = math.min(s + 999, #ids)
      local member = redis.call('SMISMEMBER', KEYS[1], unpack(ids, s, e))
      for j = s, e do in_todos[ids[j]] = member[j - s + 1] == 1 end
    end
    local stop = false  -- a job that could not be taken: the round ends
    for _, r in ipairs(round) do
      if #picked >= budget or tries <= 0 then break end
      local key, entries = r[1], r[2]
      local low, high = '[' .. key .. SEP, '(' .. key .. '\32'
      local m = per
      local park = nil
      if CTL.key_conc then
        if all_held + #picked + m > CTL.key_conc then
          m = math.min(m, CTL.key_conc - redis.call('ZLEXCOUNT', CTL.held, low, high)
                          - (mine[key] or 0))
        end
        if m < 1 then park = INF end
      end
      if not park and CTL.key_rate then
        local room, next_at = ctl_room('k' .. SEP .. key, CTL.key_rate, m, now)
        if room == 0 then park = next_at else m = room end
      end
      if park then
        tries = tries - 1
        ctl_deactivate(key)
        redis.call('ZADD', CTL.parked, ctl_int(park), key)
      elseif #entries == 0 then
        tries = tries - 1
        ctl_deactivate(key)
      else
        local took, used = 0, 0
        for j = 1, math.min(m, #entries) do
          if #picked >= budget or tries <= 0 then break end
          tries = tries - 1
          local entry = entries[j]
          local id = string.sub(entry, #key + 19)
          local job, lease
          if prefix ~= '' then
            job, lease = keys_of(id, 0)
          elseif named[id] then
            job, lease = keys_of(id, named[id])
          else
            cut = true
            break  -- not a named candidate: the caller names more and calls again
          end
          used = j
          drops[#drops + 1] = entry
          local doom = ctl_doom(id)
          if not in_todos[id] then
            -- A stale index entry (the id left todos behind the queue's back): dropped.
            stop = true
            break
          elseif doom or (deadlines and ctl_expired(job, now)) then
            flush()  -- what ends the job may put other keys in the round-robin
            redis.call('SREM', KEYS[1], id)
            ctl_expire(id, job, KEYS[3], now, doom)
            for _, v in ipairs({id, '', 0, '', '', 0, 0, 0, doom and 'unmet' or 'expired',
                                key, 0}) do
              out[#out + 1] = v
            end
            stop = true
            break
          end
          picked[#picked + 1] = {id, job, lease, key}
          took = took + 1
        end
        if took > 0 then
          mine[key] = (mine[key] or 0) + took
          if CTL.key_rate then ctl_take('k' .. SEP .. key, CTL.key_rate, took, now) end
          if not stop and used == #entries then
            gone[#gone + 1] = key  -- its last waiting job: it leaves the round-robin
          else
            bumps[#bumps + 1] = string.format('%d', next_turn())
            bumps[#bumps + 1] = key
          end
        end
      end
      if cut or stop then break end
    end
    flush()
    if stop then careful = true end
  end
  if cut then
    -- Not a verdict on the queue: the caller names the next candidates and asks again.
    if #picked == 0 then return out end
  elseif tries == 0 and #picked < budget and redis.call('ZCARD', CTL.active) > 0 then
    -- Out of tries with keys still to look at (it parked those at their limit): a
    -- wake token makes the next claim go on at once instead of after a poll.
    ctl_push_wake(KEYS[5], 1)
    if #picked == 0 then return out end
  elseif #picked < budget and out[4] == '' and redis.call('SCARD', KEYS[1]) > #picked then
    -- Jobs wait, but every key that has them is at its limit (the claim parked them).
    out[4] = 'keys'
    local soonest = redis.call('ZRANGE', CTL.parked, '0', '0', 'WITHSCORES')[2]
    if soonest and tonumber(soonest) < INF then out[5] = tonumber(soonest) end
  end
end
if #picked == 0 then
  -- Nothing claimable: wake tokens are stale (a new job, a freed slot or a resume
  -- pushes fresh ones), so idle workers stay asleep until then or retry_at.
  if out[4] ~= '' then
    redis.call('DEL', KEYS[5])
  elseif redis.call('SCARD', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[5])
    out[6] = 0
  end
  return out
end
local leased = 0
local rec = {0}
local longest = 0
local fence = nil
-- The leased ids, moved todos -> in_progress together after the loop: SREM + SADD is the
-- batched SMOVE (each id was just seen in todos, and nothing else runs in between), one
-- command pair per call instead of one command per job; a single id takes the SMOVE.
local moved = {}
-- The concurrency slots the leases hold, written the same way: holds scored by each
-- lease's expiry, held by key (the picks above counted this call's own per key).
local holds, held_by_key = {}, {}
local started = {}  -- leased ids with a start deadline: it no longer binds them
for i, p in ipairs(picked) do
  local id, job, lease, key = p[1], p[2], p[3], p[4]
  local f = redis.pcall('HMGET', job, 'task', 'payload', 'max_attempts', 'lease_ms',
                        'attempts', 'expires_at', 'claimed_at')
  local wrong_type = type(f) == 'table' and f.err ~= nil
  local doomed = not wrong_type and ctl_doom(id)
  if doomed or (not wrong_type and ctl_deadline_passed(f[6], f[7], now)) then
    redis.call('SREM', KEYS[1], id)
    ctl_expire(id, job, KEYS[3], now, doomed or nil)
    for _, v in ipairs({id, '', 0, '', '', 0, 0, 0, doomed and 'unmet' or 'expired', key,
                        0}) do
      out[#out + 1] = v
    end
  elseif wrong_type or not f[1] or not f[2] or not is_count(f[3]) or tonumber(f[3]) < 1
      or (f[5] and not is_count(f[5])) then
    redis.call('SMOVE', KEYS[1], KEYS[3], id)
    if not wrong_type then
      local reason = 'job hash missing at claim'
      if redis.call('EXISTS', job) == 1 then reason = 'job hash corrupt at claim' end
      redis.call('HSET', job, 'dead_reason', reason, 'finished_at', ctl_int(now))
    end
    ctl_finished(id, 'dead')
    ctl_event('dead', id, {'reason', 'job hash missing or corrupt at claim'})
    for _, v in ipairs({id, '', 0, '', '', 0, 0, 0, 'dead', key, 0}) do out[#out + 1] = v end
  else
    if not fence then
      fence = redis.call('INCRBY', KEYS[6], ctl_int(#picked)) - #picked
      rec[1] = ctl_int(fence)
      out[2] = fence
    end
    local lease_ms = default_ms
    if is_count(f[4]) and tonumber(f[4]) >= 1 and tonumber(f[4]) <= MAX_MS then
      lease_ms = tonumber(f[4])
    end
    local max_attempts = f[3]
    -- One HSET for the attempt count and the lease's fields (f[5] was checked a count).
    local attempt = (tonumber(f[5]) or 0) + 1
    local token = token_of(fence + i)
    local cap = caps[f[1]]
    moved[#moved + 1] = id
    -- SET PX, not PSETEX: the same on Redis, and fakeredis rounds PSETEX's expiry down
    -- to a whole second (a 1 s lease could last 1 ms there).
    redis.call('SET', lease, token, 'PX', ctl_int(lease_ms))
    redis.call('HSET', job, 'attempts', ctl_int(attempt), 'token', token, 'owner', ARGV[5],
               'claimed_at', ctl_int(now))
    if cap and cap < tonumber(max_attempts) then
      max_attempts = cap
      redis.call('HSET', job, 'max_attempts', cap)
    end
    if f[6] then started[#started + 1] = id end
    local held = 0
    if CTL.holding then
      local h = #holds
      holds[h + 1], holds[h + 2] = ctl_int(now + lease_ms), id
      held_by_key[h + 1], held_by_key[h + 2] = '0', key .. SEP .. id
      held = 1
    end
    if CTL.fifo then held = held + 2 end
    leased = leased + 1
    if CTL.events then  -- (ctl_event checks too: here the fields' table is not built)
      ctl_event('started', id, {'attempt', attempt, 'token', token, 'owner', ARGV[5]})
    end
    rec[#rec + 1] = ctl_int(i)
    rec[#rec + 1] = id
    if lease_ms > longest then longest = lease_ms end
    -- Written in place: a table per job to copy from cost more than the job's SET.
    local o = #out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6] = id, token,
      attempt, f[1], f[2], max_attempts
    out[o + 7], out[o + 8], out[o + 9], out[o + 10], out[o + 11] = lease_ms, lease_ms, 'ok',
      key, held
  end
end
if #moved == 1 then
  redis.call('SMOVE', KEYS[1], KEYS[2], moved[1])  -- an idle worker's claim takes one
else
  ctl_bulk('SREM', KEYS[1], moved, 1)
  ctl_bulk('SADD', KEYS[2], moved, 1)
end
ctl_add_wide(CTL.holds, holds)
ctl_add_wide(CTL.held, held_by_key)
ctl_bulk('ZREM', CTL.deadlines, started, 1)
if CTL.rate then ctl_take('q', CTL.rate, leased, now) end
if longest > 0 then
  -- Numbers as '%d' text: cjson would format each with '%.14g' (a float formatting per
  -- job, as a number argument of redis.call is).
  redis.call('SET', KEYS[7], cjson.encode(rec), 'PX', ctl_int(longest))
end
-- An empty todos makes any wake tokens stale; dropping them keeps idle workers asleep.
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[5])
  out[6] = 0
end
return out
