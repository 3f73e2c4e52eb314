-- On a cluster, before an invalidation deletes (a soft purge softens) anything: sets the
-- name's invalidation (soft purge) marker to the time of the node that holds it, in
-- microseconds, as a string of digits (a Lua number would print in exponent form).
-- KEYS[1]: the marker. ARGV[1]: how long it lives (ms).
local now = redis.call("TIME")
redis.call("SET", KEYS[1], now[1] .. string.format("%06d", tonumber(now[2])), "PX", ARGV[1])
return 0
