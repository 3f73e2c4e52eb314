-- soften(key, now, formats): lowers the wall-clock fresh-until time of the entry `key` to `now`
-- (ms since the Unix epoch) where it is later; the TTL stays (SETRANGE). That time is 8 bytes,
-- big-endian, at byte 9 of the entry's 35-byte header (see codec.rs); a value shorter than the
-- header, or whose format byte is not one of `formats`, is left alone.
-- A function only: soft_invalidate.lua and write.lua follow it.
local function soften(key, now, formats)
  local head = redis.pcall("GETRANGE", key, 0, 34)
  if type(head) ~= "string" or #head < 35 then return end
  if not string.find(formats, string.sub(head, 1, 1), 1, true) then return end
  local fresh = 0
  for i = 10, 17 do fresh = fresh * 256 + string.byte(head, i) end
  if fresh <= now then return end
  local bytes, rest = {}, now
  for i = 8, 1, -1 do
    bytes[i] = rest % 256
    rest = math.floor(rest / 256)
  end
  redis.call("SETRANGE", key, 9, string.char(unpack(bytes)))
end
