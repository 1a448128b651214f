-- ARGV[1]: the key prefix; ARGV[2]: msgpack list of groups (an order's nodes, "kind:value").
-- Returns one list of tallies per group (graph_read in redis_graph.lua, prepended).
return graph_read(ARGV[1], cmsgpack.unpack(ARGV[2]))
