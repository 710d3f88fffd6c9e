-- Claim a consumer group and create it when missing, in one atomic step: the record
-- says "created" only for a group this step created, and it keeps the position the
-- group started from ('start') and a position from which re-creating it loses nothing
-- ('at', moved forward by checkpoints).
-- KEYS[1]  stream
-- KEYS[2]  ownership registry (hash)
-- ARGV[1]  registry field of the group record
-- ARGV[2..4] owner: cluster, namespace, name
-- ARGV[5]  group
-- ARGV[6]  where to create it: '$' (the stream's last entry, with ENTRIESREAD), '0' or an entry ID
-- ARGV[7]  registry field of the epoch, ARGV[8] epoch to record when there is none
-- ARGV[9]  registry field of the stream's Topic record, ARGV[10..12] the Topic the group declares
-- ARGV[13] the group's deletionPolicy (recorded for apply --prune)
-- Returns {'created', at, epoch}, {'adopted'|'exists', at, epoch} (epoch: the registry's epoch
-- record), {'conflict', raw record} (of the
-- group, or 'topic' and the Topic's when another Topic owns the stream), {'nostream'}
-- or {'wrongtype', type}.
local stream, registry = KEYS[1], KEYS[2]
local field, cluster, namespace, name, group, start = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local policy = record_policy(ARGV[13])

local refused = denied({{'HGET', registry, field}, {'TYPE', stream}, {'XINFO', 'GROUPS', stream},
                        {'HSET', registry, field, '1'}, {'HSETNX', registry, ARGV[7], '1'}})
if refused then
  return refused
end
local current, taken = own_record(registry, field, cluster, namespace, name)
if taken then
  return {'conflict', taken}
end
local _, topic_taken = own_record(registry, ARGV[9], ARGV[10], ARGV[11], ARGV[12])
if topic_taken then
  return {'conflict', topic_taken, 'topic'}
end
local kind = redis.call('TYPE', stream)['ok']
if kind == 'none' then
  -- The stream is its Topic's to create (and to record as created): a group never makes
  -- it, or a Topic that failed would leave a stream nobody owns.
  return {'nostream'}
elseif kind ~= 'stream' then
  return {'wrongtype', kind}
end

local info = group_info(stream, group)
if info then
  refused = denied({{'XPENDING', stream, group}})
  if refused then
    return refused
  end
  local created = current ~= nil and current['created'] == true
  local at = (current and current['at']) or safe_position(stream, group, info)
  local first = current and current['start']
  if not current or current['created'] ~= created or current['at'] ~= at or current['deletionPolicy'] ~= policy then
    redis.call('HSET', registry, field, encode_record(cluster, namespace, name, created, first, at, policy))
  end
  redis.call('HSETNX', registry, ARGV[7], ARGV[8])
  return {current and 'exists' or 'adopted', at, redis.call('HGET', registry, ARGV[7])}
end

refused = denied({{'XGROUP', 'CREATE', stream, group, '$'}, {'XINFO', 'STREAM', stream}})
if refused then
  return refused
end
local stream_info = redis.call('XINFO', 'STREAM', stream)
local fields = {}
for i = 1, #stream_info, 2 do
  fields[stream_info[i]] = stream_info[i + 1]
end
-- ENTRIESREAD so that Redis reports a valid lag at once.
local at
if start == '$' then
  at = fields['last-generated-id']
  redis.call('XGROUP', 'CREATE', stream, group, at, 'ENTRIESREAD', fields['entries-added'])
elseif start == '0' then
  at = '0-0'
  redis.call('XGROUP', 'CREATE', stream, group, at, 'ENTRIESREAD', fields['entries-added'] - fields['length'])
else
  at = start
  redis.call('XGROUP', 'CREATE', stream, group, at)
end
redis.call('HSET', registry, field, encode_record(cluster, namespace, name, true, at, at, policy))
redis.call('HSETNX', registry, ARGV[7], ARGV[8])
return {'created', at, redis.call('HGET', registry, ARGV[7])}
