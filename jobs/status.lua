-- Move a batch that is not finished to a new status: running, paused, or
-- cancelled (final: its keys then expire after the retention).
-- KEYS: meta, then the batch's other keys (for expiry)
-- ARGV: status, pause code, pause reason, now ms
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then
  return redis.error_reply('batch not found')
end
if cur == 'done' or cur == 'cancelled' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'pauseCode', ARGV[2], 'pauseReason', ARGV[3])
if ARGV[1] == 'cancelled' then
  finish('cancelled', ARGV[4])
end
return 1
