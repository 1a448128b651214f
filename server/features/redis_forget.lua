-- Forget read-created entities of one type (expiry.READ_TTL_MS): at most ARGV[4] of those in
-- the read-only set ARGV[2] whose newest event is at or before ARGV[3] (ms; as
-- expiry.forgotten), with their table keys (ARGV[5]: msgpack list of the type's key prefixes,
-- a key being prefix .. member) and their place in the presence set ARGV[1]. Atomic, so a user
-- whose real event lands meanwhile is either still here or already out of the read-only set.
local stale = redis.call('ZRANGEBYSCORE', ARGV[2], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
if #stale == 0 then return 0 end
local prefixes = cmsgpack.unpack(ARGV[5])
for i = 1, #stale do
  if #prefixes > 0 then
    local keys = {}
    for j = 1, #prefixes do keys[j] = prefixes[j] .. stale[i] end
    redis.call('UNLINK', unpack(keys))
  end
end
redis.call('ZREM', ARGV[2], unpack(stale))
redis.call('ZREM', ARGV[1], unpack(stale))
return #stale
