-- The scheduling-controls prelude, put in front of every script whose header says
-- "(controls prelude)": ordering, fair queueing by key, limits, start deadlines and
-- pause (docs/protocol.md, "Scheduling controls").
-- A script is sent only the statements below that it reaches (protocol/prelude.py):
-- each is a top-level statement at column 0, a function ending at a line that is `end`.
-- The control keys are one block of KEYS (QueueKeys.control, in this order): settings,
-- waiting, active, parked, placed, holds, held, rates, deadlines, meta, wake, cancelled,
-- stream, blocked, after, dependents, uses_after, todos (CTL_N keys); ctl_init(i)
-- names the index of the first and reads the queue's stored controls once per call, so
-- every script applies the ones stored with the queue, whatever its caller believes.
--   waiting  sorted set, all scores 0: one member per waiting job of a fifo queue,
--            '<key>\31<rank, 16 digits>\31<id>', so a key's jobs are a lexical range
--            in rank order (priority first, then enqueue order)
--   active   sorted set: the keys with waiting jobs that may be served, scored by their
--            last turn (lowest first: round-robin)
--   parked   sorted set: keys at a limit, scored by when to look at them again (Redis ms)
--   placed   hash: id -> '<priority>\31<key>\31<rank>' of each job of a fifo queue
--   holds    sorted set: the ids holding a concurrency slot, scored by their lease's
--            expiry (Redis ms), so an expired lease frees its slot without a reaper
--   held     sorted set, all scores 0: '<key>\31<id>' per hold, counted by key
--   rates    sorted set: the GCRA state of each rate limit ('q' for the queue,
--            'k\31<key>' per key), scored by its theoretical arrival time (Redis ms)
--   deadlines sorted set: ids with a start deadline, scored by it (Redis ms)
--   blocked  set: ids waiting for the jobs they were enqueued after (dependencies)
--   after    hash: blocked id -> '<dependencies left>\31<policy: d or a>'; or, for a job
--            whose dependency failed, 'dead\31<reason>' until it ends dead
--   dependents sorted set, all scores 0: '<dependency>\31<dependent>' per pair left
--   uses_after string: 1 once any job of the queue waited for another
local CTL = {}
local CTL_N = 18  -- keys in the control block (QueueKeys.control)
local SEP = '\31'
local INF = 1e15  -- a parked key's "look again" when only a freed slot can unpark it

-- One command over a list of members (width values each: 1 for SADD, 2 for ZADD's
-- score and member) in slices of 1,000: unpack() is bounded by Lua's C stack (8,000
-- values), and one call per member costs Redis more than the member itself.
local function ctl_bulk(command, key, list, width)
  local step = 1000 * width
  for s = 1, #list, step do
    redis.call(command, key, unpack(list, s, math.min(s + step - 1, #list)))
  end
end

-- Add members (score, member pairs) to a sorted set a claim writes per job: holds and
-- held (a member per running job), active (a new turn per served key). Redis keeps a
-- sorted set of up to 128 short members as a listpack, where each insert and removal
-- scans the whole set: at 100 members an add and a remove cost 6 times what they cost
-- in a skiplist (46,000 instructions against 7,000), a quarter of what Redis spent per
-- job of a drain under key_concurrency (benchmarks/README.md).
-- A member longer than zset-max-listpack-value (64 bytes unless configured) makes Redis
-- convert the set to a skiplist, and it stays one when that member leaves, until the set
-- is emptied or reloaded: so an add that leaves the set over 32 members brings one in
-- and takes it out again. A smaller set stays a listpack: an idle worker's claim of one
-- job makes and empties its sets each time, and a skiplist's making cost that claim +
-- ack 50,000 instructions more (8 %) than the listpack it replaced. The member starts
-- with a control character, which no id or key holds, so it is no one's member. It is
-- written out: string.rep('w', 255) cost 12,500 instructions a call, the literals' join
-- about 500; and it is built only here, not in a top-level statement every call runs.
local function ctl_add_wide(key, list)
  if #list == 0 then return end
  if redis.call('ZCARD', key) + #list / 2 <= 32 then
    ctl_bulk('ZADD', key, list, 2)
    return
  end
  local wide = SEP .. 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'
    .. 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'
    .. 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'
    .. 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'
  redis.call('ZADD', key, '0', wide)
  ctl_bulk('ZADD', key, list, 2)
  redis.call('ZREM', key, wide)
end

-- An integer as a command argument. Redis turns a number passed to redis.call into
-- text with '%.17g', float formatting that was a tenth of its instructions per claimed
-- and acked job (callgrind); '%d' costs a fraction of it, and a value a call sends many
-- times (its clock, a lease's length, an attempt) is formatted once.
local CTL_INT = {}
local function ctl_int(n)
  local s = CTL_INT[n]
  if not s then
    s = string.format('%d', n)
    CTL_INT[n] = s
  end
  return s
end

-- A stored rate 'count:per_ms:burst' as {interval ms, burst}, or nil.
local function ctl_rate(v)
  if not v then return nil end
  local c, p, b = string.match(v, '^(%d+):(%d+):(%d+)$')
  c, p, b = tonumber(c), tonumber(p), tonumber(b)
  if not (c and p and b and c >= 1 and p >= 1 and b >= 1) then return nil end
  return {p / c, b}
end

-- A stored count as the client writes one (1 to 2^31 - 1), else none: a value written
-- behind the queue's back must not reach a command that refuses it halfway through.
local function ctl_count(v)
  local n = tonumber(v)
  if n and n >= 1 and n <= 2147483647 and n == math.floor(n) then return n end
  return nil
end

local function ctl_init(i)
  local s = redis.call('HMGET', KEYS[i], 'ordering', 'paused', 'max_in_flight',
                       'key_concurrency', 'rate', 'key_rate', 'events')
  local max_in_flight, key_conc = ctl_count(s[3]), ctl_count(s[4])
  -- One constructor naming every field the prelude sets, the later ones as nil: Lua
  -- sizes the table once, where the same fields assigned one by one into {} rehashed it
  -- six times as it grew (~19,000 of redis-server's instructions per call, callgrind).
  CTL = {
    settings = KEYS[i], waiting = KEYS[i + 1], active = KEYS[i + 2], parked = KEYS[i + 3],
    placed = KEYS[i + 4], holds = KEYS[i + 5], held = KEYS[i + 6], rates = KEYS[i + 7],
    deadlines = KEYS[i + 8], meta = KEYS[i + 9], wake = KEYS[i + 10],
    cancelled = KEYS[i + 11], stream = KEYS[i + 12], blocked = KEYS[i + 13],
    after = KEYS[i + 14], dependents = KEYS[i + 15], uses_after = KEYS[i + 16],
    todos = KEYS[i + 17],
    fifo = s[1] == 'fifo', paused = s[2] == '1', max_in_flight = max_in_flight,
    key_conc = key_conc, rate = ctl_rate(s[5]), key_rate = ctl_rate(s[6]),
    events = ctl_count(s[7]),
    -- Holds are kept while a concurrency limit applies; ids claimed before one was set
    -- hold no slot.
    holding = max_in_flight ~= nil or key_conc ~= nil,
    -- Set later in the call, when first needed (ctl_finished, ctl_uses_after, ctl_seq,
    -- ctl_activate).
    pub = nil, channel = nil, deps = nil, seq = nil, seq_last = nil, activated = nil,
  }
end

-- A lifecycle event of a job, on the queue's stream when it keeps one (settings.events:
-- its length, about). fields: more field/value pairs ('attempt', 3, ...).
local function ctl_event(kind, id, fields)
  if not CTL.events then return end
  local args = {'XADD', CTL.stream, 'MAXLEN', '~', ctl_int(CTL.events), '*', 'type', kind,
                'job', id}
  for _, v in ipairs(fields or {}) do
    args[#args + 1] = type(v) == 'number' and ctl_int(v) or v  -- see ctl_int
  end
  redis.call(unpack(args))
end

-- Set below (it needs the fifo helpers): a job ended, tell the jobs waiting for it.
local ctl_dependents

-- Push n wake tokens (n >= 1) on a wake list, which holds 64 at most: trimmed only when
-- over the cap (an LTRIM per enqueue was a sixth of its commands).
local function ctl_push_wake(wake, n)
  local tokens = {}
  for _ = 1, math.min(n, 64) do tokens[#tokens + 1] = '1' end
  if redis.call('LPUSH', wake, unpack(tokens)) > 64 then redis.call('LTRIM', wake, '0', '63') end
end

-- One wake token per job that just became claimable, capped: idle workers block on the
-- wake list. A paused queue wakes nobody (resume does).
local function ctl_wake(n)
  if n > 0 and not CTL.paused then ctl_push_wake(CTL.wake, n) end
end

-- A job ended (state: 'dead', 'cancelled' or 'deleted', its hash gone): tell the
-- waiters (Queue.wait) on the queue's finished channel (a shard channel on a cluster:
-- meta.publish, written by the first client that prepared the queue, names the
-- command; read once per call), and the jobs enqueued after it.
local function ctl_finished(id, state)
  if CTL.pub == nil then
    local pub = redis.call('HGET', CTL.meta, 'publish')
    CTL.pub = (pub == 'PUBLISH' or pub == 'SPUBLISH') and pub or false
    CTL.channel = string.sub(CTL.settings, 1, #CTL.settings - #'settings') .. 'finished'
  end
  if CTL.pub then redis.call(CTL.pub, CTL.channel, id) end
  ctl_dependents(id, false, state)
end

-- Whether any job of the queue was ever enqueued after another (read once per call).
local function ctl_uses_after()
  if CTL.deps == nil then CTL.deps = redis.call('EXISTS', CTL.uses_after) == 1 end
  return CTL.deps
end

-- The reason a job must end dead without running (a dependency of it failed), or nil.
local function ctl_doom(id)
  if not ctl_uses_after() then return nil end
  local v = redis.call('HGET', CTL.after, id)
  if v and string.sub(v, 1, 5) == 'dead' .. SEP then return string.sub(v, 6) end
  return nil
end

-- The placement of an id of a fifo queue: priority, key, rank (nil: not ranked yet).
local function ctl_place(id)
  local v = redis.call('HGET', CTL.placed, id)
  if not v then return 0, '', nil end
  local a = string.find(v, SEP, 1, true)
  local b = string.find(v, SEP, a + 1, true)
  return tonumber(string.sub(v, 1, a - 1)) or 0, string.sub(v, a + 1, b - 1),
    tonumber(string.sub(v, b + 1))
end

local function ctl_member(key, rank, id)
  return key .. SEP .. string.format('%016d', rank) .. SEP .. id
end

-- The next enqueue number: drawn from a block reserved once per call (ranks only need
-- to grow; the numbers a call leaves unused are skipped).
local function ctl_seq()
  if not CTL.seq or CTL.seq > CTL.seq_last then
    CTL.seq_last = redis.call('HINCRBY', CTL.meta, 'seq', '64')
    CTL.seq = CTL.seq_last - 63
  end
  CTL.seq = CTL.seq + 1
  return CTL.seq - 1
end

-- Put a key in the round-robin unless it is parked (it comes back when unparked); once
-- per key and call.
local function ctl_activate(key)
  CTL.activated = CTL.activated or {}
  if CTL.activated[key] then return end
  CTL.activated[key] = true
  if not redis.call('ZSCORE', CTL.parked, key) then
    redis.call('ZADD', CTL.active, 'NX', '0', key)
  end
end

-- Forget that this call put the key in the round-robin: it just left it (taken out, or
-- parked), and a job that waits under it later in the same call must put it back.
local function ctl_deactivated(key)
  if CTL.activated then CTL.activated[key] = nil end
end

-- Take the key out of the round-robin.
local function ctl_deactivate(key)
  redis.call('ZREM', CTL.active, key)
  ctl_deactivated(key)
end

-- A waiting id of a fifo queue ranked now: its placed value and its waiting member (the
-- key is activated). ctl_rank writes them; a batch of new jobs writes them in bulk.
local function ctl_ranked(id, priority, key)
  local rank = (1000 - tonumber(priority)) * 1e12 + ctl_seq()
  ctl_activate(key)
  return priority .. SEP .. key .. SEP .. string.format('%d', rank),
    ctl_member(key, rank, id)
end

-- Index a waiting id of a fifo queue under its priority and key, ranked now.
local function ctl_rank(id, priority, key)
  local placed, member = ctl_ranked(id, priority, key)
  redis.call('HSET', CTL.placed, id, placed)
  redis.call('ZADD', CTL.waiting, '0', member)
end

-- A new job's placement (fifo queues): ranked now when it waits, else when it does.
local function ctl_new(id, priority, key, waits)
  if not CTL.fifo then return end
  if waits then
    ctl_rank(id, tonumber(priority), key)
  else
    redis.call('HSET', CTL.placed, id, priority .. SEP .. key .. SEP)
  end
end

-- The id was just added to todos: index it for the fifo claim. keep: back to its old
-- place (an expired lease, a release), else ranked now (new, due or retried work).
local function ctl_wait(id, keep)
  if not CTL.fifo then return end
  local priority, key, rank = ctl_place(id)
  if keep and rank then
    redis.call('ZADD', CTL.waiting, '0', ctl_member(key, rank, id))
    ctl_activate(key)
  else
    ctl_rank(id, priority, key)
  end
end

-- Dependencies: the job dep ended, ok (done) or not (state: dead, cancelled, deleted).
-- Each job waiting for it counts one dependency less; one with none left goes to todos
-- (ranked now on a fifo queue), in this same step. A failed dependency of a job whose
-- policy is 'd' sends that job to todos marked to end dead (after: 'dead\31<reason>',
-- deadline 0): the next claim, or the reaper's deadline pass, ends it dead with the
-- reason, through the job hash keys they declare. Each pair is removed as it is
-- counted, so a step run twice (a re-sent call) counts nothing twice.
-- Returns how many jobs it made claimable.
ctl_dependents = function(dep, ok, state)
  if not ctl_uses_after() then return 0 end
  local low, high = '[' .. dep .. SEP, '(' .. dep .. '\32'
  local pairs_left = redis.call('ZRANGEBYLEX', CTL.dependents, low, high)
  if #pairs_left == 0 then return 0 end
  redis.call('ZREMRANGEBYLEX', CTL.dependents, low, high)
  local woken = 0
  for _, m in ipairs(pairs_left) do
    local id = string.sub(m, #dep + 2)
    local v = redis.call('HGET', CTL.after, id)
    local left, policy = nil, nil
    if v then left, policy = string.match(v, '^(%d+)' .. SEP .. '([ad])$') end
    if left and redis.call('SISMEMBER', CTL.blocked, id) == 1 then
      left = tonumber(left) - 1
      if not ok and policy == 'd' then
        redis.call('HSET', CTL.after, id,
                   'dead' .. SEP .. 'dependency ' .. dep .. ' ended ' .. (state or 'dead'))
        redis.call('ZADD', CTL.deadlines, '0', id)
        left = 0
      elseif left > 0 then
        redis.call('HSET', CTL.after, id, ctl_int(left) .. SEP .. policy)
      else
        redis.call('HDEL', CTL.after, id)
      end
      if left == 0 then
        redis.call('SMOVE', CTL.blocked, CTL.todos, id)
        ctl_wait(id, false)
        woken = woken + 1
      end
    end
  end
  ctl_wake(woken)
  return woken
end

-- The id was just taken out of todos other than by a claim (cancelled, expired,
-- purged): drop its index entry, and its key from the round-robin when it was the key's
-- last waiting job (a key that gets new jobs later comes back first, like a new key).
local function ctl_unwait(id)
  if not CTL.fifo then return end
  local _, key, rank = ctl_place(id)
  if rank then redis.call('ZREM', CTL.waiting, ctl_member(key, rank, id)) end
  if #redis.call('ZRANGEBYLEX', CTL.waiting, '[' .. key .. SEP, '(' .. key .. '\32',
                 'LIMIT', 0, 1) == 0 then
    ctl_deactivate(key)
    redis.call('ZREM', CTL.parked, key)
  end
end

-- The id's lease ended (settled, reaped, expired): free its slot, let its key be served
-- again, and wake a worker that waits for a slot.
local function ctl_unhold(id)
  if redis.call('ZREM', CTL.holds, id) == 0 then return end
  local _, key = ctl_place(id)
  redis.call('ZREM', CTL.held, key .. SEP .. id)
  redis.call('ZADD', CTL.parked, 'XX', '0', key)
  ctl_push_wake(CTL.wake, 1)
end

-- Rate limits (GCRA): how many of `want` may start now under `rate`, and when the next
-- may when none can; ctl_take records that k started.
local function ctl_room(member, rate, want, now)
  local tat = tonumber(redis.call('ZSCORE', CTL.rates, member)) or now
  if tat < now then tat = now end
  local interval, burst = rate[1], rate[2]
  local room = math.floor((burst * interval - (tat - now)) / interval + 1e-9)
  if room >= want then return want, 0 end
  if room < 1 then return 0, math.ceil(tat - (burst - 1) * interval) end
  return room, 0
end

local function ctl_take(member, rate, k, now)
  if k < 1 then return end
  local tat = tonumber(redis.call('ZSCORE', CTL.rates, member)) or now
  if tat < now then tat = now end
  redis.call('ZADD', CTL.rates, tat + rate[1] * k, member)
end

-- Start deadlines: a job not started by its deadline ends dead, counted apart. One
-- claimed before (its hash has claimed_at: retried, released, requeued) has started:
-- it runs. The job hash's two fields as read (nil when absent).
local function ctl_deadline_passed(expires_at, claimed_at, now)
  local at = not claimed_at and type(expires_at) == 'string' and tonumber(expires_at)
  return at and now >= at or false
end

local function ctl_expired(job, now)
  local f = redis.pcall('HMGET', job, 'expires_at', 'claimed_at')
  if type(f) ~= 'table' or f.err then return false end
  return ctl_deadline_passed(f[1], f[2], now)
end

-- doom: the reason a failed dependency gave (ctl_doom, read by the caller), or nil for
-- a start deadline that passed.
local function ctl_expire(id, job, dead, now, doom)
  local reason = doom
  if reason then
    redis.call('HDEL', CTL.after, id)
  else
    reason = 'expired before start'
    redis.call('HINCRBY', CTL.meta, 'expired', '1')
  end
  redis.call('SADD', dead, id)
  redis.call('HSET', job, 'dead_reason', reason, 'finished_at', ctl_int(now))
  redis.call('ZREM', CTL.deadlines, id)
  ctl_event('dead', id, {'reason', reason})
  ctl_finished(id, 'dead')
end

-- The job is gone for good (its hash deleted): forget its placement and deadline.
local function ctl_forget(id)
  redis.call('HDEL', CTL.placed, id)
  if ctl_uses_after() then redis.call('HDEL', CTL.after, id) end
  redis.call('ZREM', CTL.deadlines, id)
end
