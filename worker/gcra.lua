-- Reserve the next call slot of a GCRA bucket and say how long to wait
-- for it. Unlike allow-or-retry, a caller never loses its place: the slot
-- is taken at once and the caller sleeps until it comes.
-- KEYS: bucket
-- ARGV: emission interval (microseconds), burst tolerance (microseconds)
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
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
return wait
