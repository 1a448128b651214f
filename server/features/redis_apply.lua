-- Hanzo's feature tables in Redis: the same updates as kernels/windows.py, for one batch of
-- operations in one round trip (atomic, so replicas sharing the server never interleave a
-- batch). ARGV[1]: msgpack list of operations; ARGV[2]: the batch's watermark (ms); ARGV[3]
-- and ARGV[4] (or ''): the replica's applied-position key and the log position this batch
-- brings it to; ARGV[5] (or ''): the catalogue feed's stream, ARGV[6] its length, ARGV[7] and
-- ARGV[8] the entry's 'from' and 'events'. A batch whose position is already reached was
-- applied (a reply lost with the connection, then sent again) and is skipped whole, its feed
-- entry with it: so a resend never counts twice, here or at the replicas that follow the feed.
if ARGV[3] ~= '' and tonumber(redis.call('GET', ARGV[3]) or '0') >= tonumber(ARGV[4]) then return -1 end
local ops = cmsgpack.unpack(ARGV[1])
local watermark = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', 'hz:watermark') or '0')
if watermark > current then redis.call('SET', 'hz:watermark', ARGV[2]) end

local function zeros(n)
  local t = {}
  for i = 1, n do t[i] = 0.0 end
  return t
end

for i = 1, #ops do
  local op = ops[i]
  local kind = op[1]
  local key = op[2]
  if kind == 1 then
    -- window: {1, key, buckets, bucket, floor_bucket, columns, {column, amount, column, amount, ...}}
    -- Slot s is one field s<s>: int64 slot, int64 bucket, then the columns as doubles
    -- (little-endian), so a read turns a whole hash into an array in one step. The amounts are
    -- added one after the other, in the order given (as the embedded kernel does).
    local buckets, bucket, floor, columns, adds = op[3], op[4], op[5], op[6], op[7]
    if bucket > floor then
      local slot = bucket % buckets
      local fmt = '<i8i8' .. string.rep('d', columns)
      local blob = redis.call('HGET', key, 's' .. slot)
      local values
      local held = -1
      if blob then
        values = {struct.unpack(fmt, blob)}
        held = values[2]
      end
      if held <= bucket then
        if held < bucket then
          values = zeros(columns + 2)
        end
        for j = 1, #adds, 2 do
          values[adds[j] + 3] = values[adds[j] + 3] + adds[j + 1]
        end
        values[1], values[2] = slot, bucket
        redis.call('HSET', key, 's' .. slot, struct.pack(fmt, unpack(values, 1, columns + 2)))
      end
    end
  elseif kind == 2 then
    -- sequence: {2, key, length, ts, item}: a list, newest first, of "<ts>:<item>"
    redis.call('LPUSH', key, string.format('%d', op[4]) .. ':' .. op[5])
    redis.call('LTRIM', key, 0, op[3] - 1)
  elseif kind == 3 then
    -- distinct: {3, key, slots, ts, value_hash}
    local slots, ts, h = op[3], op[4], op[5]
    local fields = {}
    for s = 0, slots - 1 do
      fields[#fields + 1] = 'h' .. s
      fields[#fields + 1] = 's' .. s
    end
    local held = redis.call('HMGET', key, unpack(fields))
    local match, empty, oldest, oldest_seen = -1, -1, -1, 0
    for s = 0, slots - 1 do
      local value = held[2 * s + 1]
      local seen = tonumber(held[2 * s + 2] or '-1')
      if value == h then
        match = s
        break
      end
      if not value then
        if empty == -1 then empty = s end
      elseif oldest == -1 or seen < oldest_seen then
        oldest, oldest_seen = s, seen
      end
    end
    if match >= 0 then
      if ts > tonumber(held[2 * match + 2]) then redis.call('HSET', key, 's' .. match, ts) end
    else
      local target = empty
      if target < 0 then target = oldest end
      redis.call('HSET', key, 'h' .. target, h, 's' .. target, ts)
    end
  elseif kind == 4 then
    -- last: {4, key, ts, value}; ties in time go to the larger value
    local held = redis.call('HMGET', key, 'v', 't')
    local t = tonumber(held[2] or '-1')
    local v = tonumber(held[1] or '0')
    if op[3] > t or (op[3] == t and op[4] > v) then
      redis.call('HSET', key, 'v', string.format('%.17g', op[4]), 't', op[3])
    end
  elseif kind == 5 then
    -- span: {5, key, ts}
    local held = redis.call('HMGET', key, 'f', 'l')
    local first = tonumber(held[1] or '-1')
    local last = tonumber(held[2] or '-1')
    if first == -1 or op[3] < first then redis.call('HSET', key, 'f', op[3]) end
    if op[3] > last then redis.call('HSET', key, 'l', op[3]) end
  elseif kind == 13 then
    -- total over a life: {13, key, ts, amount, day_ms}
    -- read and written whole as op 4 writes a value: a sum past the largest double is inf, which
    -- HINCRBYFLOAT would refuse half-way through the batch
    local held = redis.call('HMGET', key, 'v', 't')
    redis.call('HSET', key, 'v', string.format('%.17g', tonumber(held[1] or '0') + op[4]))
    if op[3] > tonumber(held[2] or '-1') then redis.call('HSET', key, 't', op[3]) end
  elseif kind == 14 then
    -- days with an event over a life: {14, key, ts, 0, day_ms}, sent in time order: 'm' holds
    -- which of the 32 days before the newest were counted (kernels/windows.days_add)
    local held = redis.call('HMGET', key, 'v', 't', 'm')
    local t = tonumber(held[2] or '-1')
    local v = tonumber(held[1] or '0')
    local m = tonumber(held[3] or '0')
    local day = math.floor(op[3] / op[5])
    if t < 0 then
      v, m = 1, 0
    else
      local newest = math.floor(t / op[5])
      if day > newest then
        local shift = day - newest
        if shift < 32 then
          m = bit.bor(bit.lshift(m, shift), bit.lshift(1, shift - 1))
        elseif shift == 32 then
          m = bit.lshift(1, 31)
        else
          m = 0
        end
        v = v + 1
      elseif day < newest then
        local back = newest - 1 - day
        if back < 32 and bit.band(bit.rshift(m, back), 1) == 0 then
          m = bit.bor(m, bit.lshift(1, back))
          v = v + 1
        end
      end
    end
    redis.call('HSET', key, 'v', string.format('%.17g', v), 'm', string.format('%d', m))
    if op[3] > t then redis.call('HSET', key, 't', op[3]) end
  elseif kind == 15 then
    -- the day of the first (op[4] = 1) or latest event over a life: {15, key, ts, first, day_ms}
    local held = redis.call('HMGET', key, 'v', 't')
    local t = tonumber(held[2] or '-1')
    local v = tonumber(held[1] or '0')
    local day = math.floor(op[3] / op[5])
    if t < 0 or (op[4] == 1 and day < v) or (op[4] ~= 1 and day > v) then
      redis.call('HSET', key, 'v', string.format('%d', day))
    end
    if op[3] > t then redis.call('HSET', key, 't', op[3]) end
  elseif kind == 6 then
    -- the entity exists: {6, key, member, ttl_ms} (a sorted set scored by last sight)
    redis.call('ZADD', key, op[4], op[3])
  elseif kind == 12 then
    -- the batch's event ids, now applied: no longer pending (redis_dedup.lua):
    -- {12, pending_key, id_key_prefix, {hash, ...}}
    local hashes = op[4]
    for j = 1, #hashes do
      redis.call('SET', op[3] .. hashes[j], '1', 'XX', 'KEEPTTL')
    end
    for j = 1, #hashes, 1000 do
      redis.call('SREM', key, unpack(hashes, j, math.min(j + 999, #hashes)))
    end
  elseif kind == 8 then
    -- expiry, once per key and batch: {8, key, ttl_ms}
    redis.call('PEXPIRE', key, op[3])
  elseif kind == 11 then
    -- an entity kept for good once a real event names it (expiry.READ_TTL_MS):
    -- {11, presence_key, read_only_key, member, ts (-1: none), real (0/1), ttl_ms, {untimed keys}}
    local presence, reading, member, ts, real, untimed = op[2], op[3], op[4], op[5], op[6], op[8]
    if real == 1 then
      redis.call('ZREM', reading, member)
      for j = 1, #untimed do redis.call('PERSIST', untimed[j]) end
    elseif not redis.call('ZSCORE', presence, member) or redis.call('ZSCORE', reading, member) then
      -- new, or no real event yet: forgotten READ_TTL_MS after its newest event
      if ts >= 0 then redis.call('ZADD', reading, 'GT', ts, member) end
      for j = 1, #untimed do redis.call('PEXPIRE', untimed[j], op[7]) end
    end
    if ts >= 0 then redis.call('ZADD', presence, ts, member) end
  elseif kind == 9 then
    graph_order(op)  -- redis_graph.lua, prepended
  elseif kind == 10 then
    graph_chargeback(op)
  end
end
-- last, so a script that fails half-way (a bug) leaves the position where a resend applies it again
if ARGV[3] ~= '' then redis.call('SET', ARGV[3], ARGV[4]) end
if ARGV[5] ~= '' then
  redis.call('XADD', ARGV[5], 'MAXLEN', '~', ARGV[6], '*', 'from', ARGV[7], 'events', ARGV[8])
end
return #ops
