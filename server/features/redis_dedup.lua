-- Event ids seen: for each hash in ARGV[1] (msgpack list), SET NX with the horizon (ARGV[2],
-- ms) as expiry, under the key prefix ARGV[3]. Returns 1 for a new id, 0 for a duplicate, in order.
-- A new id's value is the replica's pending set (ARGV[4]) until its batch is applied (the apply
-- script then sets it to '1'), and it goes into that set: a replica that stops in between finds
-- there, on restart, the ids it marked seen but never logged, and unmarks them, so a client's
-- resend is taken. An id still pending is no duplicate yet: its batch may never reach a log, so
-- a batch holding one is refused whole, its new ids unmarked again, and the reply is
-- {-1, index, ...} (1-based, the pending ids) for the caller to say "retry".
local hashes = cmsgpack.unpack(ARGV[1])
local out = {}
local new = {}
local mine = {}  -- marked by this call: a second copy of an id in the batch is a duplicate of the first
local in_flight = {-1}
for i = 1, #hashes do
  local key = ARGV[3] .. ':id:' .. hashes[i]
  if redis.call('SET', key, ARGV[4], 'NX', 'PX', ARGV[2]) then
    out[i] = 1
    new[#new + 1] = hashes[i]
    mine[key] = true
  else
    out[i] = 0
    if not mine[key] and redis.call('GET', key) ~= '1' then in_flight[#in_flight + 1] = i end
  end
end
if #in_flight > 1 then
  for i = 1, #new do redis.call('DEL', ARGV[3] .. ':id:' .. new[i]) end
  return in_flight
end
for i = 1, #new, 1000 do
  redis.call('SADD', ARGV[4], unpack(new, i, math.min(i + 999, #new)))
end
return out
