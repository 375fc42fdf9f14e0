-- Move a batch to a new status, if the move is legal:
--   running -> paused | cancelled      paused -> running | cancelled
-- Importing ends only through start (or as abandoned); done, cancelled
-- and abandoned are final (done runs again only through reopen). A
-- cancelled batch's keys expire after its retention.
-- ARGV: status, pause code, pause reason, now ms
-- Returns 1 when moved, 0 when the batch had that status already; an
-- error reply 'ILLEGAL <current>' for a move the rules forbid.
local to = ARGV[1]
local cur = redis.call('HGET', meta, 'status')
if not cur then
  return redis.error_reply('NOTFOUND batch not found')
end
if cur == to then
  return 0
end
local legal = {
  running = {paused = true, cancelled = true},
  paused = {running = true, cancelled = true},
}
if not (legal[cur] and legal[cur][to]) then
  return redis.error_reply('ILLEGAL ' .. cur)
end
if to == 'paused' then
  redis.call('HSET', meta, 'status', to, 'pauseCode', ARGV[2], 'pauseReason', ARGV[3])
else
  redis.call('HSET', meta, 'status', to)
  redis.call('HDEL', meta, 'pauseCode', 'pauseReason')
end
if to == 'running' then
  redis.call('HSET', meta, 'resumedAt', ARGV[4], 'activeAt', int(clock()))
  redis.call('HINCRBY', meta, 'epoch', 1)
elseif to == 'cancelled' then
  finish('cancelled', ARGV[4])
end
return 1
