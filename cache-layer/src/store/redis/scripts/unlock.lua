-- Releases a distributed load lock if it still holds our token (a lock that expired and was
-- taken by another instance is not ours to delete), then tells the instances waiting for the
-- load, so that they read its value. Returns 1 when released, 0 otherwise.
-- KEYS[1]: the lock. ARGV[1]: our token; ARGV[2]: the channel; ARGV[3]: the message (0xFC and
-- the key's bounded name).
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("DEL", KEYS[1])
redis.call("PUBLISH", ARGV[2], ARGV[3])
return 1
