-- Begin executions of contacts' tasks: decide whether each runs, and if
-- it does, claim the contact for it and return what is left to do. Many
-- contacts of one batch begin in one call.
-- ARGV: claim ttl ms, max attempts, now ms, then contact, token pairs
-- Returns, for the whole batch:
--   {'gone'}                 no such batch (deleted or expired)
--   {'finished', status}     nothing to send: the batch is final
--   {'hold', status}         the batch is importing
-- or {'each', verdict...}, a verdict per contact:
--   {'finished', why}        nothing to send: the contact is done (or unknown)
--   {'parked'}               the batch is paused: the contact waits in the
--                            parked set until resume queues it again
--   {'busy'}                 another live execution holds the contact
--   {'settled', completed}   the contact's row ran out of attempts here
--   {'run', ops, done, attempts, recordPrevious, epoch}
local ttl, max_attempts, now_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local st = redis.call('HMGET', meta, 'status', 'leaseUntil', 'recordPrevious', 'epoch')
local status = st[1]
if not status then
  return {'gone'}
end
if status == 'importing' then
  if lease_lost(st[2]) then
    finish('abandoned', now_ms)
    return {'finished', 'abandoned'}
  end
  return {'hold', status}
end
if status ~= 'running' and status ~= 'paused' then
  return {'finished', status}
end
local now = clock()

local function begin_one(contact, token)
  local entry = redis.call('HGET', plan, contact)
  if not entry then
    return {'finished', 'no such contact'}
  end
  if status == 'paused' then
    redis.call('SADD', parked, contact)
    return {'parked'}
  end
  local other, expired = held(contact, now)
  if other then
    return {'busy'}
  end
  local ops = parse_ops(entry)
  local done, att, first = {}, {}, 0
  for i, op in ipairs(ops) do
    done[i] = tostring(redis.call('HEXISTS', results, op.lines[1]))
    att[i] = tonumber(redis.call('HGET', attempts, op.lines[1]) or '0')
    if done[i] == '0' and first == 0 then
      first = i
    end
  end
  if first == 0 then
    redis.call('HDEL', claims, contact)
    return {'finished', 'contact done'}
  end
  if expired then
    -- The execution that held the contact stopped without a word: its
    -- worker died or lost Redis in the middle of a call. That call costs
    -- its row an attempt, like any failure, so a task that kills its
    -- worker again and again ends as a dead letter instead of looping.
    local l = ops[first].lines[1]
    local n = redis.call('HINCRBY', attempts, l, 1)
    touch(attempts)
    att[first] = n
    if n >= max_attempts then
      local res = cjson.encode({s = 'failed', a = n, why = 'worker_lost',
        err = 'gave up after ' .. n .. ' attempts: the worker making the call stopped each time (crash, kill -9 or lost Redis)'})
      settle_op(contact, ops, first, res, 'failed', 'worker_lost', true)
      redis.call('HDEL', claims, contact)
      return {'settled', tostring(complete(now_ms))}
    end
  end
  redis.call('HSET', claims, contact, token .. '|' .. int(now + ttl))
  return {'run', entry, table.concat(done, ','), table.concat(att, ','), st[3] or '0', st[4] or '0'}
end

local out = {'each'}
for i = 4, #ARGV, 2 do
  out[#out + 1] = begin_one(ARGV[i], ARGV[i + 1])
end
touch(claims, parked)
return out
