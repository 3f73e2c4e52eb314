-- On a cluster: how long ago, in microseconds of the node that holds it, a marker (mark.lua)
-- was set; nil when there is none. Both times are that one node's, so no two clocks are
-- compared. A marker that is not a plausible time is as recent as can be (0).
-- KEYS[1]: the marker.
local at = redis.call("GET", KEYS[1])
if not at then return false end
at = tonumber(at)
if not at or not (at >= 0 and at < 1e17) then return 0 end
local now = redis.call("TIME")
return tonumber(now[1]) * 1000000 + tonumber(now[2]) - at
