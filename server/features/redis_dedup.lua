-- Event ids seen: for each hash in ARGV[1] (msgpack list), SET NX with the horizon (ARGV[2],
-- ms) as expiry, under the key prefix ARGV[3]. Returns 1 for a new id, 0 for a duplicate, in order.
-- Each new id also goes into the replica's pending set (ARGV[4]) until its batch is in the
-- replica's log: a replica that stops in between finds there, on restart, the ids it marked
-- seen but never logged, and unmarks them, so a client's resend is taken.
local hashes = cmsgpack.unpack(ARGV[1])
local out = {}
local new = {}
for i = 1, #hashes do
  if redis.call('SET', ARGV[3] .. ':id:' .. hashes[i], '1', 'NX', 'PX', ARGV[2]) then
    out[i] = 1
    new[#new + 1] = hashes[i]
  else
    out[i] = 0
  end
end
for i = 1, #new, 1000 do
  redis.call('SADD', ARGV[4], unpack(new, i, math.min(i + 999, #new)))
end
return out
