-- What a worker's sweep needs to know of a batch, after ending an import
-- whose lease ran out.
-- ARGV: now ms, stall ms
-- Returns {status, parked, needs queueing 0|1}: needs queueing when the
-- batch runs and its importer died before every task was queued, or when
-- it has made no progress for stall ms with no live execution holding any
-- of its contacts (its tasks were lost: deleted by hand, or gone with a Redis
-- that failed over without persistence).
local st = redis.call('HMGET', meta, 'status', 'leaseUntil', 'activeAt', 'queuedAt')
-- live_claims counts the contacts a live execution holds; an expired
-- claim (its worker died) holds nothing.
local function live_claims(now)
  local n = 0
  local all = redis.call('HGETALL', claims)
  for i = 2, #all, 2 do
    local exp = string.match(all[i], '|(%d+)$')
    if exp and tonumber(exp) > now then
      n = n + 1
    end
  end
  return n
end
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
elseif not st[2] and live_claims(now) == 0 then
  local last = 0
  for i = 3, 4 do
    last = math.max(last, tonumber(st[i] or '0'))
  end
  if now - last > tonumber(ARGV[2]) then
    requeue = 1
  end
end
if requeue == 1 then
  redis.call('HSET', meta, 'queuedAt', int(now))
  redis.call('HDEL', meta, 'leaseUntil')
end
return {status, redis.call('SCARD', parked), requeue}
