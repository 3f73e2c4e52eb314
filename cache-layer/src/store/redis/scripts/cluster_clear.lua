-- On a cluster, a clear's record, before its entries are deleted: scores the cleared prefix
-- ("" clears every key) with the time of the node that holds the set of clears, in
-- microseconds, so that a load's write made before the deletes but checked after this record
-- (cluster.rs) is deleted again. Clears older than a load may last are dropped; past `most`
-- prefixes, the oldest are dropped and "" (every key) takes the newest of their times, so that
-- a load that began before any of them is not kept. The set expires with its newest clear.
-- KEYS[1]: the set of clears on a cluster.
-- ARGV[1]: the prefix (at most 200 bytes); ARGV[2]: how long a clear is kept (ms);
-- ARGV[3]: the most prefixes kept.
local now = redis.call("TIME")
local at = tonumber(now[1]) * 1000000 + tonumber(now[2])
redis.call("ZADD", KEYS[1], at, ARGV[1])
local oldest = string.format("(%.0f", at - tonumber(ARGV[2]) * 1000)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", oldest)
local over = redis.call("ZCARD", KEYS[1]) - tonumber(ARGV[3])
if over > 0 then
  local last = redis.call("ZRANGE", KEYS[1], over - 1, over - 1, "WITHSCORES")
  redis.call("ZREMRANGEBYRANK", KEYS[1], 0, over - 1)
  redis.call("ZADD", KEYS[1], "GT", last[2], "")
end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 0
