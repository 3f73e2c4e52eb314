-- On one Redis, a whole invalidation in one step (after record.lua): deletes every member of
-- the tag's set, then the entry and the set, records the name in the invalidation history,
-- then publishes the name. If it stops half-way (an error), the set still names every member
-- for the replay. Returns 0.
-- KEYS[1]: the entry; KEYS[2]: the tag's set; KEYS[3]: the history.
-- ARGV[1]: the channel; ARGV[2]: the name; ARGV[3]: the most names the history keeps;
-- ARGV[4]: the name's bounded form.
for _, member in ipairs(redis.call("SMEMBERS", KEYS[2])) do redis.call("DEL", member) end
redis.call("DEL", KEYS[1], KEYS[2])
record(KEYS[3], ARGV[4], ARGV[3])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return 0
