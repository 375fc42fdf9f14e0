-- Give lines their final result, once, and count them; complete the batch
-- when the last row is in, and let its keys expire after the retention.
-- KEYS: meta, results, errors, then the batch's other keys (for expiry)
-- ARGV: result json, status, reason, now ms, calls, retries, rateLimited,
--       lines...
local meta, results, errs = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then
  return -1
end
local status, reason = ARGV[2], ARGV[3]
for i = 8, #ARGV do
  if redis.call('HSETNX', results, ARGV[i], ARGV[1]) == 1 then
    redis.call('HINCRBY', meta, status, 1)
    if reason ~= '' then
      redis.call('HINCRBY', errs, reason, 1)
    end
  end
end
local names = {'apiCalls', 'retries', 'rateLimited'}
for i = 1, 3 do
  local n = tonumber(ARGV[4 + i])
  if n ~= 0 then
    redis.call('HINCRBY', meta, names[i], n)
  end
end
local st = redis.call('HMGET', meta, 'status', 'rows', 'succeeded', 'failed', 'invalid')
if st[1] ~= 'running' and st[1] ~= 'paused' then
  return 0
end
if tonumber(st[3]) + tonumber(st[4]) + tonumber(st[5]) >= tonumber(st[2]) then
  finish('done', ARGV[4])
  return 1
end
return 0
