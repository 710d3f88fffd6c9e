-- Destroy a group redistreams created and release its records in one atomic step: a
-- destroy refused (ACL) releases nothing, so the deletion can be tried again.
-- KEYS[1]  stream
-- KEYS[2]  ownership registry (hash)
-- ARGV[1]  group
-- ARGV[2..] registry fields to release (the group record, its reset record)
-- Returns {'destroyed', pending} or {'gone', 0} when the group (or its stream) no longer exists.
local stream, registry = KEYS[1], KEYS[2]
local refused = denied({{'TYPE', stream}, {'XINFO', 'GROUPS', stream}, {'XGROUP', 'DESTROY', stream, ARGV[1]},
                        {'HDEL', registry, ARGV[2]}})
if refused then
  return refused
end
local outcome, pending = 'gone', 0
if redis.call('TYPE', stream)['ok'] == 'stream' then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local entry = {}
    for i = 1, #g, 2 do
      entry[g[i]] = g[i + 1]
    end
    if entry['name'] == ARGV[1] then
      pending = entry['pending']
      redis.call('XGROUP', 'DESTROY', stream, ARGV[1])
      outcome = 'destroyed'
    end
  end
end
for i = 2, #ARGV do
  redis.call('HDEL', registry, ARGV[i])
end
return {outcome, pending}
