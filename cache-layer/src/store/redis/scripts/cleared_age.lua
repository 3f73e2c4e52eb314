-- On a cluster: how long ago, in microseconds of the node that holds the set of clears
-- (cluster_clear.lua), the newest clear covering a key was recorded; nil when none is. Both
-- times are that one node's, so no two clocks are compared.
-- KEYS[1]: the set of clears on a cluster. ARGV[1]: the key's first 200 bytes.
local newest = false
local clears = redis.call("ZRANGE", KEYS[1], 0, -1, "WITHSCORES")
for i = 1, #clears, 2 do
  local prefix = clears[i]
  if string.sub(ARGV[1], 1, #prefix) == prefix then
    local at = tonumber(clears[i + 1])
    if not newest or at > newest then newest = at end
  end
end
if not newest then return false end
local now = redis.call("TIME")
return tonumber(now[1]) * 1000000 + tonumber(now[2]) - newest
