-- Begin an execution of a contact's task: decide whether it runs, and if
-- it does, claim the contact for it and return what is left to do.
-- ARGV: contact, token, claim ttl ms, max attempts, now ms
-- Returns {verdict, ...}:
--   {'gone'}                 no such batch (deleted or expired)
--   {'finished', status}     nothing to send: the batch (or contact) is final
--   {'hold', status}         the batch is importing
--   {'parked'}               the batch is paused: the contact waits in the
--                            parked set until resume queues it again
--   {'busy'}                 another live execution holds the contact
--   {'settled', completed}   the contact's row ran out of attempts here
--   {'run', ops, done, attempts, recordPrevious, epoch}
local contact, token = ARGV[1], ARGV[2]
local st = redis.call('HMGET', meta, 'status', 'leaseUntil', 'recordPrevious', 'epoch')
local status = st[1]
if not status then
  return {'gone'}
end
if status == 'importing' then
  if lease_lost(st[2]) then
    finish('abandoned', ARGV[5])
    return {'finished', 'abandoned'}
  end
  return {'hold', status}
end
if status ~= 'running' and status ~= 'paused' then
  return {'finished', status}
end
local entry = redis.call('HGET', plan, contact)
if not entry then
  return {'finished', 'no such contact'}
end
if status == 'paused' then
  redis.call('SADD', parked, contact)
  touch(parked)
  return {'parked'}
end
local now = clock()
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
  -- worker died or lost Redis in the middle of a call. That call costs its
  -- row an attempt, like any failure, so a task that kills its worker
  -- again and again ends as a dead letter instead of looping.
  local l = ops[first].lines[1]
  local n = redis.call('HINCRBY', attempts, l, 1)
  touch(attempts)
  att[first] = n
  if n >= tonumber(ARGV[4]) then
    local res = cjson.encode({s = 'failed', a = n, why = 'worker_lost',
      err = 'gave up after ' .. n .. ' attempts: the worker making the call stopped each time (crash, kill -9 or lost Redis)'})
    settle_op(contact, ops, first, res, 'failed', 'worker_lost', true)
    redis.call('HDEL', claims, contact)
    return {'settled', tostring(complete(ARGV[5]))}
  end
end
redis.call('HSET', claims, contact, token .. '|' .. int(now + tonumber(ARGV[3])))
touch(claims)
return {'run', entry, table.concat(done, ','), table.concat(att, ','), st[3] or '0', st[4] or '0'}
