-- End an execution that leaves a contact's rows unsettled: a transient
-- failure (one more attempt of the op is counted), a deferral, a shutdown,
-- or a pause or cancel seen in the middle. The claim is given up; a paused
-- batch parks the contact until resume.
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
if held(contact, clock()) == token then
  redis.call('HDEL', claims, contact)
  if ARGV[3] ~= '' then
    n = redis.call('HINCRBY', attempts, ARGV[3], 1)
    touch(attempts)
  end
end
if ARGV[4] == '1' and status == 'paused' then
  redis.call('SADD', parked, contact)
  touch(parked)
end
return {status, n}
