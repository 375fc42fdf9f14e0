-- Take failed lines back for a retry: their results are removed, the
-- counters move with them, attempts start again, and a finished batch runs
-- again (and no longer expires).
-- KEYS: meta, results, errors, attempts, then the batch's other keys
-- ARGV: lines...
local meta, results, errs, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local status = redis.call('HGET', meta, 'status')
if not status then
  return redis.error_reply('batch not found')
end
if status == 'importing' or status == 'cancelled' then
  return redis.error_reply('batch is ' .. status)
end
local n = 0
for i = 1, #ARGV do
  local prev = redis.call('HGET', results, ARGV[i])
  if prev then
    local r = cjson.decode(prev)
    if r.s == 'failed' then
      redis.call('HDEL', results, ARGV[i])
      redis.call('HDEL', attempts, ARGV[i])
      redis.call('HINCRBY', meta, 'failed', -1)
      if r.why and r.why ~= '' then
        redis.call('HINCRBY', errs, r.why, -1)
      end
      n = n + 1
    end
  end
end
if n > 0 then
  redis.call('HSET', meta, 'status', 'running')
  redis.call('HDEL', meta, 'finishedAt', 'pauseCode', 'pauseReason')
  for _, k in ipairs(KEYS) do
    redis.call('PERSIST', k)
  end
end
return n
