-- Renew, or end, the lease of the process importing a batch. While it
-- holds the lease the batch is its: an importing batch whose lease ran out
-- is abandoned (the importer died part-way); a running batch whose lease
-- ran out before its tasks were all queued is queued by a worker from the
-- ledger (see sweep).
-- ARGV: lease ms (renew), or 0 (end: every task is queued)
-- Returns 1, or 0 when the batch is not the importer's any more.
local st = redis.call('HMGET', meta, 'status', 'leaseUntil')
if not st[1] or not st[2] then
  return 0
end
if lease_lost(st[2]) then
  return 0
end
if tonumber(ARGV[1]) == 0 then
  redis.call('HDEL', meta, 'leaseUntil')
else
  redis.call('HSET', meta, 'leaseUntil', int(clock() + tonumber(ARGV[1])))
end
return 1
