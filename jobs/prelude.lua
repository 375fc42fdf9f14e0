-- The prelude of every ledger script: the batch's keys and the helpers
-- that settle rows and end a batch. Every script takes all of a batch's
-- keys, in Store.keys order, so that they all live under one hash tag.
local meta, results, errs, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead, plan, claims, parked = KEYS[6], KEYS[8], KEYS[9], KEYS[10]

-- clock is Redis's own time in ms: claims and leases are compared across
-- machines whose clocks may disagree.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- int writes a number computed here as the integer it is: how a Lua
-- number turns into a string differs between interpreters (an embedded
-- queue runs these scripts on another one), and the fields it goes to are
-- parsed as integers.
local function int(n)
  return string.format('%.0f', n)
end

-- touch gives keys just written the expiry of a finished batch, so that
-- a late write (a call in flight when the batch ended) cannot leave a key
-- behind that never expires.
local function touch(...)
  local ttl = redis.call('PTTL', meta)
  if ttl > 0 then
    for _, k in ipairs({...}) do
      redis.call('PEXPIRE', k, ttl)
    end
  end
end

-- finish gives a batch its final status and lets all its keys expire
-- after the batch's retention.
local function finish(status, now)
  redis.call('HSET', meta, 'status', status, 'finishedAt', now)
  local ttl = tonumber(redis.call('HGET', meta, 'retention') or '0')
  if ttl > 0 then
    for _, k in ipairs(KEYS) do
      redis.call('EXPIRE', k, ttl)
    end
  end
end

-- lease_lost reports whether the process importing the batch stopped
-- renewing its lease: it died part-way.
local function lease_lost(lease)
  return lease ~= false and lease ~= nil and tonumber(lease) < clock()
end

-- complete finishes a running or paused batch whose last row is final.
local function complete(now)
  local st = redis.call('HMGET', meta, 'status', 'rows', 'succeeded', 'failed', 'invalid')
  if st[1] ~= 'running' and st[1] ~= 'paused' then
    return 0
  end
  if tonumber(st[3]) + tonumber(st[4]) + tonumber(st[5]) >= tonumber(st[2]) then
    finish('done', now)
    return 1
  end
  return 0
end

local function add_stats(calls, retries, limited)
  local names = {'apiCalls', 'retries', 'rateLimited'}
  local vals = {calls, retries, limited}
  for i = 1, 3 do
    local n = tonumber(vals[i])
    if n ~= 0 then
      redis.call('HINCRBY', meta, names[i], n)
    end
  end
end

-- parse_ops reads a contact's plan entry ("chunk/member:0|1:line,line;..."),
-- as AddContacts writes it.
local function parse_ops(s)
  s = string.match(s, '^%d+/(.*)$')
  local ops = {}
  for op in string.gmatch(s, '[^;]+') do
    local m, r, ls = string.match(op, '^([^:]*):([01]):(.*)$')
    local lines = {}
    for l in string.gmatch(ls, '[^,]+') do
      lines[#lines + 1] = l
    end
    ops[#ops + 1] = {m = m, r = r, lines = lines}
  end
  return ops
end

-- settle_lines gives lines that have no result yet res, and counts them.
local function settle_lines(lines, res, status, reason)
  for _, l in ipairs(lines) do
    if redis.call('HSETNX', results, l, res) == 1 then
      redis.call('HINCRBY', meta, status, 1)
      if reason ~= '' then
        redis.call('HINCRBY', errs, reason, 1)
      end
    end
  end
end

-- settle_op gives op i of a contact its result. A result that is not a
-- success stops the contact: the op's first line gets it, and the lines
-- after it (the op's repeats, then the contact's later ops) are never sent
-- and fail as blocked, in the same call, so no crash can come in between;
-- a row out of attempts (isdead) keeps its contact for `dlq retry`. Unless
-- batched (a caller that settles many does it once), the batch's activity
-- time and the expiry of late writes are kept up here.
local function settle_op(contact, ops, i, res, status, reason, isdead, single)
  local lines = ops[i].lines
  if status == 'succeeded' then
    settle_lines(lines, res, status, reason)
  else
    settle_lines({lines[1]}, res, status, reason)
    -- Unless another execution's call of this op went through (then the
    -- contact goes on), the contact stops here.
    if cjson.decode(redis.call('HGET', results, lines[1])).s ~= 'succeeded' then
      local blocked = cjson.encode({s = 'failed', why = 'blocked',
        err = 'not sent: line ' .. lines[1] .. ' of the same contact did not succeed first; ' ..
          'fix that row and feed failed.csv back as it is (it keeps the order)'})
      settle_lines({unpack(lines, 2)}, blocked, 'failed', 'blocked')
      for j = i + 1, #ops do
        settle_lines(ops[j].lines, blocked, 'failed', 'blocked')
      end
      if isdead then
        redis.call('SADD', dead, contact)
      end
    end
  end
  if single ~= false then
    redis.call('HSET', meta, 'activeAt', int(clock()))
    touch(results, errs, dead)
  end
end

-- owner returns the token of the claim on contact, expired or not, or
-- false. A claim is only ever replaced by a new execution's (Begin takes an
-- expired one over), so an execution whose token is still there holds the
-- contact even if its process was slow to renew.
local function owner(contact)
  local c = redis.call('HGET', claims, contact)
  if not c then
    return false
  end
  return string.match(c, '^(.*)|')
end

-- held returns the token of the live claim on contact, or false; and
-- whether a claim had expired.
local function held(contact, now)
  local c = redis.call('HGET', claims, contact)
  if not c then
    return false, false
  end
  local tok, exp = string.match(c, '^(.*)|(%d+)$')
  if tonumber(exp) > now then
    return tok, false
  end
  return false, true
end
