-- finish gives a batch its final status and lets all its keys (KEYS: the
-- meta key first, then the others) expire after the batch's retention.
-- Prepended to the scripts that can end a batch.
local function finish(status, now)
  redis.call('HSET', KEYS[1], 'status', status, 'finishedAt', now)
  local ttl = tonumber(redis.call('HGET', KEYS[1], 'retention') or '0')
  if ttl > 0 then
    for _, k in ipairs(KEYS) do
      redis.call('EXPIRE', k, ttl)
    end
  end
end

