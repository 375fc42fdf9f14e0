-- End the reading of an import: counts, extra columns, status running
-- (the tasks are queued next); a batch whose rows all have results
-- already (all invalid) is done at once. Refused unless the batch is
-- importing under a live lease.
-- ARGV: rows, contacts, extras json, now ms
local st = redis.call('HMGET', meta, 'status', 'leaseUntil')
if st[1] ~= 'importing' then
  return redis.error_reply('ILLEGAL ' .. (st[1] or 'gone'))
end
if lease_lost(st[2]) then
  finish('abandoned', ARGV[4])
  return redis.error_reply('ILLEGAL abandoned')
end
redis.call('HSET', meta, 'rows', ARGV[1], 'contacts', ARGV[2], 'extras', ARGV[3], 'startedAt', ARGV[4], 'status', 'running', 'activeAt', int(clock()))
redis.call('HINCRBY', meta, 'epoch', 1)
local c = redis.call('HMGET', meta, 'succeeded', 'failed', 'invalid')
if tonumber(c[1]) + tonumber(c[2]) + tonumber(c[3]) >= tonumber(ARGV[1]) then
  finish('done', ARGV[4])
  return 1
end
return 0
