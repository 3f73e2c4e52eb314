-- A soft purge (after soften.lua and record.lua): softens the entry and every entry its tag's
-- set names. On one Redis it also records the name in the invalidation history, so that a load
-- that began before is written stale (write.lua) while a refresh that begins after is written
-- as usual: a soft purge never refuses a write. Then publishes the message, if given.
-- On a cluster (where a script may touch only its own key) it runs once per entry, with
-- KEYS[1] and ARGV[1..2] only.
-- KEYS[1]: the entry; KEYS[2]: the tag's set (optional); KEYS[3]: the history (one Redis).
-- ARGV[1]: now (ms); ARGV[2]: the formats soften() acts on; ARGV[3]: the channel (optional);
-- ARGV[4]: the message; ARGV[5]: the most names the history keeps; ARGV[6]: the name's
-- history member (0xFD and its bounded form).
local now = tonumber(ARGV[1])
soften(KEYS[1], now, ARGV[2])
if #KEYS > 1 then
  for _, member in ipairs(redis.call("SMEMBERS", KEYS[2])) do soften(member, now, ARGV[2]) end
end
if #KEYS > 2 then record(KEYS[3], {ARGV[6]}, ARGV[5]) end
if ARGV[3] then redis.call("PUBLISH", ARGV[3], ARGV[4]) end
return 0
