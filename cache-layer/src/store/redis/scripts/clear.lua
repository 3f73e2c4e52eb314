-- On one Redis, a clear's record (after record.lua), before its entries are deleted: moves the
-- invalidation history's epoch on (member 0xFB, the last clear) and scores the cleared prefix
-- with it in the set of clears, so that a load that began before is not written (write.lua)
-- when its key starts with the prefix ("" clears every key). Past `most` prefixes the oldest
-- are dropped and the history's floor raised to them: a load that began before is refused.
-- KEYS[1]: the history; KEYS[2]: the set of clears.
-- ARGV[1]: the prefix (at most 200 bytes); ARGV[2]: the most names the history keeps;
-- ARGV[3]: the most prefixes the set of clears keeps.
record(KEYS[1], "\251", ARGV[2])
local epoch = redis.call("ZSCORE", KEYS[1], "\255")
redis.call("ZADD", KEYS[2], epoch, ARGV[1])
local over = redis.call("ZCARD", KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local last = redis.call("ZRANGE", KEYS[2], over - 1, over - 1, "WITHSCORES")
  redis.call("ZREMRANGEBYRANK", KEYS[2], 0, over - 1)
  local floor = redis.call("ZSCORE", KEYS[1], "\254")
  if not floor or tonumber(floor) < tonumber(last[2]) then
    redis.call("ZADD", KEYS[1], last[2], "\254")
  end
end
return 0
