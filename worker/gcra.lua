-- Reserve the next call slot of a GCRA bucket and say how long to wait
-- for it. Unlike allow-or-retry, a caller never loses its place: the slot
-- is taken at once and the caller sleeps until it comes.
--
-- The pace is the configured interval divided by a shared factor (at most
-- 1) that 429s lower (slow.lua); every 3 quiet seconds it climbs back by
-- 5%: a CRM's limit is usually just above where the 429s stopped.
-- KEYS: bucket, factor hash
-- ARGV: emission interval (microseconds), burst (calls)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local f = redis.call('HMGET', KEYS[2], 'factor', 'cut', 'step')
local factor = tonumber(f[1]) or 1
if factor < 1 then
  local last = math.max(tonumber(f[2]) or 0, tonumber(f[3]) or 0)
  if now - last >= 3000000 then
    factor = math.min(1, factor * 1.05)
    redis.call('HSET', KEYS[2], 'factor', tostring(factor), 'step', string.format('%.0f', now))
    redis.call('PEXPIRE', KEYS[2], 600000)
  end
end
local interval = tonumber(ARGV[1]) / factor
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait < 0 then
  wait = 0
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1000)
return math.floor(wait)
