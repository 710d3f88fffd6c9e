-- spec.consumerCleanup: remove idle consumers, checking each one in the same atomic
-- step. XGROUP DELCONSUMER drops a consumer's pending entries for good, so a consumer
-- that received entries (or read) since it was observed is kept.
-- KEYS[1]  stream
-- ARGV[1]  group
-- ARGV[2]  idle threshold in milliseconds
-- ARGV[3..] consumer names
-- Returns one {name, outcome, pending, idle ms} per name; outcome is 'removed',
-- 'pending' (kept: has pending entries), 'active' (kept: no longer idle) or 'gone';
-- {} when the group or the stream no longer exists.
local key, group = KEYS[1], ARGV[1]
local threshold = tonumber(ARGV[2])

local refused = denied({{'XINFO', 'CONSUMERS', key, group}, {'XGROUP', 'DELCONSUMER', key, group, 'c'}})
if refused then
  return refused
end

local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', key, group)
if not ok then
  return {}
end
local by_name = {}
for _, c in ipairs(consumers) do
  local entry = {}
  for i = 1, #c, 2 do
    entry[c[i]] = c[i + 1]
  end
  -- 'idle': since its last attempted read or claim, so a consumer polling a quiet
  -- stream counts as alive (Redis 7.2's 'inactive' would not).
  by_name[entry['name']] = {entry['pending'], entry['idle']}
end

local out = {}
for i = 3, #ARGV do
  local name = ARGV[i]
  local c = by_name[name]
  if c == nil then
    out[#out + 1] = {name, 'gone', 0, 0}
  elseif c[1] > 0 then
    out[#out + 1] = {name, 'pending', c[1], c[2]}
  elseif c[2] < threshold then
    out[#out + 1] = {name, 'active', 0, c[2]}
  else
    redis.call('XGROUP', 'DELCONSUMER', key, group, name)
    out[#out + 1] = {name, 'removed', 0, c[2]}
  end
end
return out
