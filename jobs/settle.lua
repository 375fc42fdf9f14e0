-- Settle one op of a contact held by an execution: its lines get their
-- final result, a failure blocks the contact's later ops, a dead letter
-- keeps the contact for `dlq retry`, and the batch completes with its last
-- row, all in one call.
-- ARGV: contact, token, op index (1-based), result json, status, reason,
--       dead 0|1, release 0|1, calls, retries, rateLimited, now ms
-- Returns 1 when this call completed the batch, 0 if not, -1 when the
-- batch is gone, -2 when the execution no longer holds the contact (its
-- claim expired and another took over): then only a success is kept, the
-- truth of a call that was made; the holder decides the rest.
local contact, token, i = ARGV[1], ARGV[2], tonumber(ARGV[3])
local res, status, reason = ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', meta) == 0 then
  return -1
end
add_stats(ARGV[9], ARGV[10], ARGV[11])
local entry = redis.call('HGET', plan, contact)
if not entry then
  return -1
end
local ops = parse_ops(entry)
local mine = owner(contact) == token
if not mine then
  if status == 'succeeded' then
    for _, l in ipairs(ops[i].lines) do
      local prev = redis.call('HGET', results, l)
      if not prev then
        settle_lines({l}, res, status, reason)
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
    touch(results, errs)
  end
  return -2
end
settle_op(contact, ops, i, res, status, reason, ARGV[7] == '1')
if ARGV[8] == '1' or status ~= 'succeeded' then
  redis.call('HDEL', claims, contact)
end
return complete(ARGV[12])
