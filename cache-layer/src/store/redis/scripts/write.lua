-- On one Redis, a whole write in one step (after soften.lua). A load's write (ARGV[4] not
-- empty) is refused (returns 1) when the key or a tag was invalidated since the load began, or
-- when the history cannot tell: it no longer reaches back that far, or began after the load.
-- When a tag's set names the most members but not this one, even after dropping up to 32
-- members whose entry is gone, the write is not made (returns 2) and the key's older value,
-- which it replaces, is deleted. Otherwise the value key is added to each tag's set (as
-- tag_add.lua does, also dropping up to three members whose entry is gone) and only then the
-- value written (returns 0), so that a failure never leaves a value its tags do not name. When
-- the key or a tag was soft-purged (and not invalidated) since the load began, the value is
-- written stale: its fresh-until time lowered to now.
-- A load's write is also refused when a clear (clear.lua) since the load began covers the key:
-- its prefix starts the key's first 200 bytes.
-- KEYS[1]: the value key; KEYS[2]: the invalidation history (record.lua); KEYS[3]: the set
-- of clears (clear.lua); KEYS[4..]: the tags' sets.
-- ARGV[1]: the value; ARGV[2]: its TTL (ms); ARGV[3]: the most members a set holds; ARGV[4]:
-- the history's epoch when the load began ("": not checked); ARGV[5]: now (ms); ARGV[6]: the
-- formats soften() acts on; ARGV[7]: the key's first 200 bytes; ARGV[8..]: the bounded names
-- of the key and its tags.
local function prune(set, own, most)
  for _, member in ipairs(redis.call("SRANDMEMBER", set, most)) do
    if member ~= own and redis.call("EXISTS", member) == 0 then redis.call("SREM", set, member) end
  end
end
local function full(set, own, most)
  return redis.call("SISMEMBER", set, own) == 0 and redis.call("SCARD", set) >= most
end
local softened = false
if ARGV[4] ~= "" then
  local since = tonumber(ARGV[4])
  local epoch = redis.call("ZSCORE", KEYS[2], "\255")
  if epoch then
    local floor = redis.call("ZSCORE", KEYS[2], "\254")
    if not floor or since < tonumber(floor) or since > tonumber(epoch) then return 1 end
    for _, prefix in ipairs(redis.call("ZRANGEBYSCORE", KEYS[3], "(" .. ARGV[4], "+inf")) do
      if string.sub(ARGV[7], 1, #prefix) == prefix then return 1 end
    end
    for i = 8, #ARGV do
      local at = redis.call("ZSCORE", KEYS[2], ARGV[i])
      if at and tonumber(at) > since then return 1 end
      local soft = redis.call("ZSCORE", KEYS[2], "\253" .. ARGV[i])
      if soft and tonumber(soft) > since then softened = true end
    end
  elseif since ~= 0 then
    return 1
  end
end
local ttl = tonumber(ARGV[2])
local most = tonumber(ARGV[3])
for i = 4, #KEYS do
  if full(KEYS[i], KEYS[1], most) then
    prune(KEYS[i], KEYS[1], 32)
    if full(KEYS[i], KEYS[1], most) then
      redis.call("DEL", KEYS[1])
      return 2
    end
  end
end
for i = 4, #KEYS do
  redis.call("SADD", KEYS[i], KEYS[1])
  if redis.call("PTTL", KEYS[i]) < ttl then redis.call("PEXPIRE", KEYS[i], ttl) end
  prune(KEYS[i], KEYS[1], 3)
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ttl)
if softened then soften(KEYS[1], tonumber(ARGV[5]), ARGV[6]) end
return 0
