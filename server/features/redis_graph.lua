-- The fraud network in Redis (server/features/graph.py's union-find, for replicas that share
-- one store): functions prepended to redis_apply.lua (operations 9 and 10, so graph updates
-- land in the same atomic call as the feature tables and the replay marker) and to
-- redis_graph_read.lua. Keys under the prefix P: P:g:p (hash node -> parent), P:g:s:<root>
-- (hash column index -> tally, valid at roots), P:g:c (hash node -> chargebacks of orders that
-- used it), P:g:o:<order id> (msgpack {ts, charged, nodes}). Nodes are "kind:value".
local G_ENTITIES, G_ORDERS, G_CHARGEBACKS = 0, 6, 7
local G_KIND = {user = 1, card = 2, device = 3, address = 4, email = 5}

local function g_kind(node)
  return G_KIND[string.match(node, '^([^:]+):')]
end

local function g_find(p, node)
  local root = node
  while true do
    local up = redis.call('HGET', p, root)
    if not up or up == root then return root end
    root = up
  end
end

local function g_find_compress(p, node)
  local root = g_find(p, node)
  while node ~= root do
    local up = redis.call('HGET', p, node)
    redis.call('HSET', p, node, root)
    node = up
  end
  return root
end

local function g_size(prefix, root)
  return tonumber(redis.call('HGET', prefix .. ':g:s:' .. root, G_ENTITIES) or '0')
end

-- {9, prefix, order_id, ts, {nodes...}, keep_ms}: the order joins its nodes into one component.
local function graph_order(op)
  local prefix, order_id, ts, nodes, keep_ms = op[2], op[3], op[4], op[5], op[6]
  local p = prefix .. ':g:p'
  if #nodes == 0 then return end
  for _, node in ipairs(nodes) do
    if redis.call('HSETNX', p, node, node) == 1 then
      local s = prefix .. ':g:s:' .. node
      redis.call('HINCRBY', s, G_ENTITIES, 1)
      redis.call('HINCRBY', s, g_kind(node), 1)
    end
  end
  local root = g_find_compress(p, nodes[1])
  for k = 2, #nodes do
    local other = g_find_compress(p, nodes[k])
    if other ~= root then
      if g_size(prefix, other) > g_size(prefix, root) then
        root, other = other, root
      end
      redis.call('HSET', p, other, root)
      local moved = redis.call('HGETALL', prefix .. ':g:s:' .. other)
      for j = 1, #moved, 2 do
        redis.call('HINCRBY', prefix .. ':g:s:' .. root, moved[j], moved[j + 1])
      end
      redis.call('DEL', prefix .. ':g:s:' .. other)
    end
  end
  redis.call('HINCRBY', prefix .. ':g:s:' .. root, G_ORDERS, 1)
  local key = prefix .. ':g:o:' .. order_id
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, cmsgpack.pack({ts, 0, nodes}), 'PX', keep_ms)
  end
end

-- {10, prefix, order_id, ts, horizon_ms}: a chargeback marks its order's component and the
-- order's own nodes, once per order, when it comes within the horizon of the order.
local function graph_chargeback(op)
  local prefix, order_id, ts, horizon = op[2], op[3], op[4], op[5]
  local key = prefix .. ':g:o:' .. order_id
  local held = redis.call('GET', key)
  if not held then return end
  local order = cmsgpack.unpack(held)
  if order[2] == 1 or ts - order[1] > horizon then return end
  local p = prefix .. ':g:p'
  local root = g_find_compress(p, order[3][1])
  redis.call('HINCRBY', prefix .. ':g:s:' .. root, G_CHARGEBACKS, 1)
  for _, node in ipairs(order[3]) do
    redis.call('HINCRBY', prefix .. ':g:c', node, 1)
  end
  redis.call('SET', key, cmsgpack.pack({order[1], 1, order[3]}), 'KEEPTTL')
end

-- The tallies of the component each group of nodes would form, and its blocklisted nodes:
-- {entities, users, cards, devices, addresses, emails, orders, chargebacks, blocklisted}.
local function graph_read(prefix, groups)
  local p = prefix .. ':g:p'
  local out = {}
  for g = 1, #groups do
    local tally = {0, 0, 0, 0, 0, 0, 0, 0, 0}
    local roots = {}
    for _, node in ipairs(groups[g]) do
      if redis.call('HEXISTS', p, node) == 0 then
        tally[G_ENTITIES + 1] = tally[G_ENTITIES + 1] + 1
        tally[g_kind(node) + 1] = tally[g_kind(node) + 1] + 1
      else
        roots[g_find(p, node)] = true
        if g_kind(node) ~= G_KIND.user and tonumber(redis.call('HGET', prefix .. ':g:c', node) or '0') > 0 then
          tally[9] = tally[9] + 1
        end
      end
    end
    for root, _ in pairs(roots) do
      local stats = redis.call('HGETALL', prefix .. ':g:s:' .. root)
      for j = 1, #stats, 2 do
        local c = tonumber(stats[j]) + 1
        tally[c] = tally[c] + tonumber(stats[j + 1])
      end
    end
    out[g] = tally
  end
  return out
end
