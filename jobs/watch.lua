-- What a worker process checks about a batch while it runs the batch's
-- tasks: the status, and the claims of its executions, renewed.
-- ARGV: claim ttl ms, then token, contact pairs to renew
-- Returns {status, pauseCode, epoch}; status '' when the batch is gone.
local st = redis.call('HMGET', meta, 'status', 'pauseCode', 'epoch')
if not st[1] then
  return {'', '', '0'}
end
local now = clock()
for i = 2, #ARGV, 2 do
  local tok, contact = ARGV[i], ARGV[i + 1]
  if owner(contact) == tok then
    redis.call('HSET', claims, contact, tok .. '|' .. int(now + tonumber(ARGV[1])))
  end
end
return {st[1], st[2] or '', st[3] or '0'}
