-- Settle ops of contacts held by executions: each op's lines get their
-- final result, a failure blocks its contact's later ops, a dead letter
-- keeps the contact for `dlq retry`, and the batch completes with its last
-- row, all in one call. Many settles of one batch go in one call.
-- ARGV: now ms, then per settle 12 values: contact, token, op index
--       (1-based), result json, status, reason, dead 0|1, release 0|1,
--       calls, retries, rateLimited, the op's lines ("l,l,..."; a success
--       needs nothing else of the plan)
-- Returns {completed, r...}: completed is 1 when this call completed the
-- batch; r per settle is 0, -1 when the batch is gone, -2 when the
-- execution no longer holds the contact (its claim expired and another
-- took over): then only a success is kept, the truth of a call that was
-- made; the holder decides the rest.
local n = (#ARGV - 1) / 12
if redis.call('EXISTS', meta) == 0 then
  local out = {0}
  for k = 1, n do
    out[k + 1] = -1
  end
  return out
end

-- stale keeps the success of an execution that no longer holds its
-- contact.
local function stale(lines, res)
  for _, l in ipairs(lines) do
    local prev = redis.call('HGET', results, l)
    if not prev then
      settle_lines({l}, res, 'succeeded', '')
    else
      local r = cjson.decode(prev)
      if r.s == 'failed' then
        -- Another execution gave the row up, but this call went
        -- through: the row succeeded.
        redis.call('HSET', results, l, res)
        redis.call('HINCRBY', meta, 'failed', -1)
        redis.call('HINCRBY', meta, 'succeeded', 1)
        if r.why and r.why ~= '' then
          redis.call('HINCRBY', errs, r.why, -1)
        end
      end
    end
  end
end

local function split(ls)
  local lines = {}
  for l in string.gmatch(ls, '[^,]+') do
    lines[#lines + 1] = l
  end
  return lines
end

local out = {0}
local calls, retries, limited = 0, 0, 0
for k = 1, n do
  local a = 1 + (k - 1) * 12
  local contact, token, i = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local res, status, reason = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  calls = calls + tonumber(ARGV[a + 9])
  retries = retries + tonumber(ARGV[a + 10])
  limited = limited + tonumber(ARGV[a + 11])
  if owner(contact) ~= token then
    if status == 'succeeded' then
      stale(split(ARGV[a + 12]), res)
    end
    out[k + 1] = -2
  elseif status == 'succeeded' then
    settle_lines(split(ARGV[a + 12]), res, status, reason)
    if ARGV[a + 8] == '1' then
      redis.call('HDEL', claims, contact)
    end
    out[k + 1] = 0
  else
    -- A failure blocks the contact's later ops: those are in the plan.
    local entry = redis.call('HGET', plan, contact)
    if entry then
      settle_op(contact, parse_ops(entry), i, res, status, reason, ARGV[a + 7] == '1', false)
      redis.call('HDEL', claims, contact)
      out[k + 1] = 0
    else
      out[k + 1] = -1
    end
  end
end
add_stats(calls, retries, limited)
redis.call('HSET', meta, 'activeAt', int(clock()))
touch(results, errs, dead)
out[1] = complete(ARGV[1])
return out
