-- Move the recovery positions ('at') of group records forward, for groups still owned
-- as observed: a group deleted behind redistreams' back is re-created from there.
-- KEYS[1]  ownership registry (hash)
-- ARGV     triples: registry field, owner as "cluster\nnamespace\nname", position
-- Returns the number of records updated.
local registry = KEYS[1]
local refused = denied({{'HGET', registry, 'f'}, {'HSET', registry, 'f', 'v'}})
if refused then
  return refused
end
local updated = 0
for i = 1, #ARGV, 3 do
  local raw = redis.call('HGET', registry, ARGV[i])
  local record = decode_record(raw)
  if record and tostring(record['cluster']) .. '\n' .. tostring(record['namespace']) .. '\n'
      .. tostring(record['name']) == ARGV[i + 1] and record['at'] ~= ARGV[i + 2] then
    record['at'] = ARGV[i + 2]
    redis.call('HSET', registry, ARGV[i], cjson.encode(record))
    updated = updated + 1
  end
end
return updated
