-- One read, one round trip: the store's clock, which entity keys exist (ARGV[1]: the entity
-- type's sorted set, ARGV[2]: msgpack list of entity keys), and the hashes of the table keys in
-- ARGV[3] (msgpack list), each as a flat field, value list; ARGV[4] is the clock's key.
local clock = redis.call('GET', ARGV[4])
local members = cmsgpack.unpack(ARGV[2])
local exists = {}
if #members > 0 then
  exists = redis.call('ZMSCORE', ARGV[1], unpack(members))
end
local keys = cmsgpack.unpack(ARGV[3])
local hashes = {}
for i = 1, #keys do
  hashes[i] = redis.call('HGETALL', keys[i])
end
return {clock or false, exists, hashes}
