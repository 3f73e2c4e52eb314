-- On one Redis, whole invalidations in one step (after record.lua): for each name, deletes
-- every member of the tag's set, then the entry and the set, and records the name in the
-- invalidation history; then publishes them all in one message. If it stops half-way (an
-- error), the sets still name every member for the replay, which sends every name again.
-- Returns 0.
-- KEYS[1]: the history; KEYS[2i], KEYS[2i+1]: the i-th name's entry and tag's set.
-- ARGV[1]: the channel; ARGV[2]: the message (one name itself, several as keys.rs's BATCH
-- says); ARGV[3]: the most names the history keeps; ARGV[3+i]: the i-th name's bounded form.
for i = 1, #ARGV - 3 do
  for _, member in ipairs(redis.call("SMEMBERS", KEYS[2 * i + 1])) do redis.call("DEL", member) end
  redis.call("DEL", KEYS[2 * i], KEYS[2 * i + 1])
  record(KEYS[1], ARGV[3 + i], ARGV[3])
end
redis.call("PUBLISH", ARGV[1], ARGV[2])
return 0
