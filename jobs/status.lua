-- Move a batch that is not done to a new status (running, paused).
-- KEYS: meta
-- ARGV: status, pause code, pause reason
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then
  return redis.error_reply('batch not found')
end
if cur == 'done' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'pauseCode', ARGV[2], 'pauseReason', ARGV[3])
return 1
