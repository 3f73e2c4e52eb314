-- On one Redis, whole invalidations in one step (after record.lua): deletes every member of
-- each name's tag's set, then the entries and the sets, records the names in the invalidation
-- history (at one epoch: no load can begin in between), then publishes them all in one
-- message. If it stops half-way (an error), the sets still name every member for the replay,
-- which sends every name again. Returns 0.
-- KEYS[1]: the history; KEYS[2i], KEYS[2i+1]: the i-th name's entry and tag's set.
-- ARGV[1]: the channel; ARGV[2]: the message (one name itself, several as keys.rs's BATCH
-- says); ARGV[3]: the most names the history keeps; ARGV[3+i]: the i-th name's bounded form.
local names = {}
for i = 1, #ARGV - 3 do
  for _, member in ipairs(redis.call("SMEMBERS", KEYS[2 * i + 1])) do redis.call("DEL", member) end
  names[i] = ARGV[3 + i]
end
redis.call("DEL", unpack(KEYS, 2))
record(KEYS[1], names, ARGV[3])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return 0
