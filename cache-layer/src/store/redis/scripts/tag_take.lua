-- On a cluster: empties a tag's set and returns its members in one step, so that a member
-- added concurrently is either returned (and its entry deleted) or stays in the set.
-- KEYS[1]: the tag's set.
local members = redis.call("SMEMBERS", KEYS[1])
redis.call("DEL", KEYS[1])
return members
