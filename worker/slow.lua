-- Lower the shared pace after a 429: the factor drops by a tenth, at most
-- once a second however many calls were refused together, never below a
-- hundredth.
-- KEYS: factor hash
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local f = redis.call('HMGET', KEYS[1], 'factor', 'cut')
local factor = tonumber(f[1]) or 1
if now - (tonumber(f[2]) or 0) < 1000000 then
  return tostring(factor)
end
factor = math.max(factor * 0.9, 0.01)
redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'cut', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], 600000)
return tostring(factor)
