-- One read, one round trip: the store's clock, which entity keys exist (ARGV[1]: the entity
-- type's sorted set, ARGV[2]: msgpack list of entity keys), and the hashes of the table keys in
-- ARGV[3] (msgpack list), each as a flat field, value list (a hash) or as its items (a list,
-- where ARGV[5], a msgpack list of 1 = hash, 2 = list, says so); ARGV[4] is the clock's key;
-- ARGV[6], where given, the type's read-only set (expiry.READ_TTL_MS): its scores come fourth.
local clock = redis.call('GET', ARGV[4])
local members = cmsgpack.unpack(ARGV[2])
local exists = {}
if #members > 0 then
  exists = redis.call('ZMSCORE', ARGV[1], unpack(members))
end
local keys = cmsgpack.unpack(ARGV[3])
local kinds = cmsgpack.unpack(ARGV[5])
local hashes = {}
for i = 1, #keys do
  if kinds[i] == 2 then
    hashes[i] = redis.call('LRANGE', keys[i], 0, -1)
  else
    hashes[i] = redis.call('HGETALL', keys[i])
  end
end
local reading = {}
if ARGV[6] and #members > 0 then
  reading = redis.call('ZMSCORE', ARGV[6], unpack(members))
end
return {clock or false, exists, hashes, reading}
