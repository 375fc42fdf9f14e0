-- What a worker's sweep needs to know of a batch, after ending an import
-- whose lease ran out.
-- ARGV: now ms, stall ms
-- Returns {status, parked, needs queueing 0|1}: needs queueing when the
-- batch runs and its importer died before every task was queued, or when
-- it has made no progress for stall ms with no execution holding any of
-- its contacts (its tasks were lost: deleted by hand, or gone with a Redis
-- that failed over without persistence).
local st = redis.call('HMGET', meta, 'status', 'leaseUntil', 'activeAt', 'queuedAt')
local status = st[1]
if not status then
  return {'', 0, 0}
end
if status == 'importing' and lease_lost(st[2]) then
  finish('abandoned', ARGV[1])
  return {'abandoned', 0, 0}
end
if status ~= 'running' then
  return {status, 0, 0}
end
local now = clock()
local requeue = 0
if lease_lost(st[2]) then
  requeue = 1
elseif not st[2] and redis.call('HLEN', claims) == 0 then
  local last = 0
  for i = 3, 4 do
    last = math.max(last, tonumber(st[i] or '0'))
  end
  if now - last > tonumber(ARGV[2]) then
    requeue = 1
  end
end
if requeue == 1 then
  redis.call('HSET', meta, 'queuedAt', now)
  redis.call('HDEL', meta, 'leaseUntil')
end
return {status, redis.call('SCARD', parked), requeue}
