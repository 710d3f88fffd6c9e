-- Claim a stream for a Topic and create it when missing, in one atomic step: the
-- record says "created" only when this step (or an earlier one of the same owner)
-- created the stream, never for a create that failed.
-- KEYS[1]  stream
-- KEYS[2]  ownership registry (hash)
-- ARGV[1]  registry field of the Topic record
-- ARGV[2..4] owner: cluster, namespace, name
-- ARGV[5]  temporary group name used to create an empty stream
-- ARGV[6]  registry field of the epoch, ARGV[7] epoch to record when there is none
-- ARGV[8]  the Topic's deletionPolicy (recorded for apply --prune)
-- Returns {'created'|'adopted'|'exists', the registry's epoch record}, {'conflict', raw record}
-- or {'wrongtype', type}.
local stream, registry = KEYS[1], KEYS[2]
local field, cluster, namespace, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local policy = record_policy(ARGV[8])

local refused = denied({{'HGET', registry, field}, {'TYPE', stream}})
if refused then
  return refused
end
local current, taken = own_record(registry, field, cluster, namespace, name)
if taken then
  return {'conflict', taken}
end
local kind = redis.call('TYPE', stream)['ok']
local outcome, created
refused = denied({{'HSET', registry, field, '1'}, {'HSETNX', registry, ARGV[6], '1'}})
  or (kind == 'none' and denied({{'XGROUP', 'CREATE', stream, ARGV[5], '$', 'MKSTREAM'},
                                 {'XGROUP', 'DESTROY', stream, ARGV[5]}}))
if refused then
  return refused
end
if kind == 'none' then
  -- A group created with MKSTREAM and destroyed again leaves an empty stream with no
  -- entry ever added, unlike XADD followed by XDEL.
  redis.call('XGROUP', 'CREATE', stream, ARGV[5], '$', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', stream, ARGV[5])
  outcome, created = 'created', true
elseif kind ~= 'stream' then
  return {'wrongtype', kind}
else
  created = current ~= nil and current['created'] == true
  outcome = current and 'exists' or 'adopted'
end
if not current or current['created'] ~= created or current['deletionPolicy'] ~= policy then
  redis.call('HSET', registry, field, encode_record(cluster, namespace, name, created, nil, nil, policy))
end
redis.call('HSETNX', registry, ARGV[6], ARGV[7])
return {outcome, redis.call('HGET', registry, ARGV[6])}
