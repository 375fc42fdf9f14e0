-- End an execution that leaves a contact's rows unsettled: a transient
-- failure (one more attempt of the op is counted), a deferral, a shutdown,
-- or a pause or cancel seen in the middle. The claim is given up; park
-- keeps the contact for resume (or, if the batch runs again already, for
-- the sweep).
-- ARGV: contact, token, attempt line (or ''), park 0|1, calls, retries,
--       rateLimited
-- Returns {status, attempts}: the batch's status ('' when it is gone)
-- and the attempts of the line noted.
local contact, token = ARGV[1], ARGV[2]
local status = redis.call('HGET', meta, 'status')
if not status then
  return {'', 0}
end
add_stats(ARGV[5], ARGV[6], ARGV[7])
local n = 0
if owner(contact) == token then
  redis.call('HDEL', claims, contact)
  if ARGV[3] ~= '' then
    n = redis.call('HINCRBY', attempts, ARGV[3], 1)
    touch(attempts)
  end
end
-- A batch paused and resumed while the execution was in a call runs
-- again, but the resume found nothing parked: park it all the same, and
-- the sweep queues it.
if ARGV[4] == '1' and (status == 'paused' or status == 'running') then
  redis.call('SADD', parked, contact)
  touch(parked)
end
return {status, n}
