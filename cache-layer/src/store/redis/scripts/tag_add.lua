-- On a cluster (where a script may touch only its own key): adds a value key to a tag's set in
-- one step and returns 1; the set then lives at least as long as the entry (no PEXPIRE NX/GT,
-- which needs Redis 7). A set that names the most members already, not this one, is left
-- alone and 0 returned: the caller does not write the value. Members whose entry is gone are
-- not pruned here: on a cluster a member is added before its value is written, by another
-- script, so a member without a value may be about to get one.
-- KEYS[1]: the tag's set. ARGV[1]: the value key; ARGV[2]: the entry's TTL (ms); ARGV[3]: the
-- most members a set holds.
if redis.call("SISMEMBER", KEYS[1], ARGV[1]) == 0 and redis.call("SCARD", KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call("SADD", KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call("PTTL", KEYS[1]) < ttl then redis.call("PEXPIRE", KEYS[1], ttl) end
return 1
