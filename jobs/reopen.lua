-- Take dead-lettered contacts back for `dlq retry`: every failed row of
-- each (the row that ran out of attempts and the rows it blocked) loses
-- its result, the counters move back with them, attempts start again, and
-- a finished batch runs again (and no longer expires). A paused batch
-- stays paused: its contacts are queued and parked until resume.
-- ARGV: contacts...
-- Returns {rows reopened, contact, contact, ...} (the contacts reopened).
local status = redis.call('HGET', meta, 'status')
if not status then
  return redis.error_reply('NOTFOUND batch not found')
end
if status ~= 'running' and status ~= 'paused' and status ~= 'done' then
  return redis.error_reply('ILLEGAL ' .. status)
end
local n, out = 0, {}
for _, contact in ipairs(ARGV) do
  local entry = redis.call('HGET', plan, contact)
  if redis.call('SREM', dead, contact) == 1 and entry then
    out[#out + 1] = contact
    for _, op in ipairs(parse_ops(entry)) do
      for _, l in ipairs(op.lines) do
        local prev = redis.call('HGET', results, l)
        if prev then
          local r = cjson.decode(prev)
          if r.s == 'failed' then
            redis.call('HDEL', results, l)
            redis.call('HDEL', attempts, l)
            redis.call('HINCRBY', meta, 'failed', -1)
            if r.why and r.why ~= '' then
              redis.call('HINCRBY', errs, r.why, -1)
            end
            n = n + 1
          end
        end
      end
    end
  end
end
if n > 0 and status == 'done' then
  redis.call('HSET', meta, 'status', 'running', 'activeAt', int(clock()))
  redis.call('HINCRBY', meta, 'epoch', 1)
  redis.call('HDEL', meta, 'finishedAt')
  for _, k in ipairs(KEYS) do
    redis.call('PERSIST', k)
  end
end
table.insert(out, 1, n)
return out
