-- Event ids seen: for each hash in ARGV[1] (msgpack list), SET NX with the horizon (ARGV[2],
-- ms) as expiry, under the key prefix ARGV[3]. Returns 1 for a new id, 0 for a duplicate, in order.
local hashes = cmsgpack.unpack(ARGV[1])
local out = {}
for i = 1, #hashes do
  if redis.call('SET', ARGV[3] .. ':id:' .. hashes[i], '1', 'NX', 'PX', ARGV[2]) then out[i] = 1 else out[i] = 0 end
end
return out
