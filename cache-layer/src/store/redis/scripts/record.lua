-- record(history, members, most): moves the invalidation history's epoch on once and scores
-- each of `members` (a table of names, the invalidations of one script call) with it. The
-- history is a sorted set: member 0xFF scores the epoch, a counter every invalidation (or
-- batch of them, made in one step) moves on; each recently invalidated name scores the epoch
-- of its last invalidation; member 0xFE scores the floor, at and above which the history is
-- complete (past `most` names, the oldest are dropped and the floor raised to them). A missing
-- history starts at the server's time in microseconds, so that its epochs are above any an
-- earlier (flushed, evicted) history gave out. Neither marker is UTF-8, so no name is one.
-- A function only: invalidate.lua, soft_invalidate.lua and clear.lua follow it.
local function record(history, members, most)
  if not redis.call("ZSCORE", history, "\255") then
    local now = redis.call("TIME")
    local start = tonumber(now[1]) * 1000000 + tonumber(now[2])
    redis.call("DEL", history)
    redis.call("ZADD", history, start, "\254", start, "\255")
  end
  local epoch = redis.call("ZINCRBY", history, 1, "\255")
  local scored = {}
  for i, member in ipairs(members) do
    scored[2 * i - 1] = epoch
    scored[2 * i] = member
  end
  redis.call("ZADD", history, unpack(scored))
  local over = redis.call("ZCARD", history) - 2 - tonumber(most)
  if over > 0 then
    local last = redis.call("ZRANGE", history, over, over, "WITHSCORES")
    redis.call("ZREMRANGEBYRANK", history, 1, over)
    redis.call("ZADD", history, last[2], "\254")
  end
end
