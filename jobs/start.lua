-- End the import of a batch: counts, extra columns, status running; a batch
-- whose rows all have results already (all invalid) is done at once.
-- KEYS: meta, then the batch's other keys (for expiry)
-- ARGV: rows, contacts, extras json, now ms
local meta = KEYS[1]
if redis.call('HGET', meta, 'status') ~= 'importing' then
  return redis.error_reply('batch is not importing')
end
redis.call('HSET', meta, 'rows', ARGV[1], 'contacts', ARGV[2], 'extras', ARGV[3], 'startedAt', ARGV[4], 'status', 'running')
local st = redis.call('HMGET', meta, 'succeeded', 'failed', 'invalid')
if tonumber(st[1]) + tonumber(st[2]) + tonumber(st[3]) >= tonumber(ARGV[1]) then
  finish('done', ARGV[4])
  return 1
end
return 0
