-- Delete a Topic's stream unless a group on it is not itself being deleted, and release
-- the Topic's record, in one atomic step: a group created meanwhile (a consumer
-- starting) keeps the stream too, and a DEL refused (ACL) releases nothing, so the
-- deletion can be tried again.
-- KEYS[1]  stream
-- KEYS[2]  ownership registry (hash)
-- ARGV[1]  registry field of the Topic record
-- ARGV[2..] groups being deleted together with the stream (deletionPolicy Delete)
-- Returns {'deleted', length}, {'kept', group…} (at most 10 names) or {type} when the
-- key holds no stream ('none' when missing); the record is released in every case.
local stream, registry = KEYS[1], KEYS[2]
local refused = denied({{'TYPE', stream}, {'XINFO', 'GROUPS', stream}, {'XLEN', stream}, {'DEL', stream},
                        {'HDEL', registry, ARGV[1]}})
if refused then
  return refused
end
local kind = redis.call('TYPE', stream)['ok']
if kind ~= 'stream' then
  redis.call('HDEL', registry, ARGV[1])
  return {kind}
end
local leaving = {}
for i = 2, #ARGV do
  leaving[ARGV[i]] = true
end
local kept = {'kept'}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  for i = 1, #g, 2 do
    if g[i] == 'name' and not leaving[g[i + 1]] and #kept <= 10 then
      kept[#kept + 1] = g[i + 1]
    end
  end
end
if #kept > 1 then
  redis.call('HDEL', registry, ARGV[1])
  return kept
end
local length = redis.call('XLEN', stream)
redis.call('DEL', stream)
redis.call('HDEL', registry, ARGV[1])
return {'deleted', length}
