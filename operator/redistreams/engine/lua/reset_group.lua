-- spec.reset: move a group once per token. The token check, XGROUP SETID and the
-- record are one atomic step, so two appliers (the CLI and the operator) never both
-- apply the same token.
-- KEYS[1]  stream
-- KEYS[2]  ownership registry (hash)
-- ARGV[1]  group
-- ARGV[2]  registry field of the reset record
-- ARGV[3]  token
-- ARGV[4]  target: '$', '0' or an entry ID <ms>-<seq>
-- ARGV[5]  spec.reset.to as written (for the record)
-- ARGV[6]  time of the reset, RFC 3339 (for the record)
-- ARGV[7]  most entries counted to keep lag valid (keeps the call short)
-- ARGV[8]  most earlier tokens remembered
-- ARGV[9]  registry field of the group's ownership record: its recovery position follows
-- Returns {'applied', id, entries-read or -1}, {'seen', recorded id}, {'nogroup', ''}
-- or {<key type>, ''} when the key is not a stream.
local key, registry = KEYS[1], KEYS[2]
local group, field, token, target = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cap = tonumber(ARGV[7])

-- The move and its record go together: a refused HSET after SETID would move the group
-- again on the next apply.
local refused = denied({{'HGET', registry, field}, {'TYPE', key}, {'XINFO', 'GROUPS', key},
                        {'XINFO', 'STREAM', key}, {'XRANGE', key, '-', '+'}, {'XGROUP', 'SETID', key, group, '0'},
                        {'HSET', registry, field, '1'}})
if refused then
  return refused
end

-- Earlier tokens are remembered too (a bounded number), so an applier still declaring
-- an older token (a GitOps sync that lags the CLI) never moves the group back.
local earlier = {}
local recorded = redis.call('HGET', registry, field)
if recorded then
  local ok, record = pcall(cjson.decode, recorded)
  if ok and type(record) == 'table' then
    if record['token'] == token then
      return {'seen', tostring(record['id'] or '')}
    end
    if type(record['earlier']) == 'table' then
      for _, t in ipairs(record['earlier']) do
        if t == token then
          return {'seen', tostring(record['id'] or '')}
        end
        earlier[#earlier + 1] = t
      end
    end
    if type(record['token']) == 'string' then
      earlier[#earlier + 1] = record['token']
    end
    while #earlier > tonumber(ARGV[8]) do
      table.remove(earlier, 1)
    end
  end
end
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'stream' then
  return {kind, ''}
end
local found = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  for i = 1, #g, 2 do
    if g[i] == 'name' and g[i + 1] == group then
      found = true
    end
  end
end
if not found then
  return {'nogroup', ''}
end

local info = redis.call('XINFO', 'STREAM', key)
local length, last, added, first, max_deleted
for i = 1, #info, 2 do
  if info[i] == 'length' then
    length = info[i + 1]
  elseif info[i] == 'last-generated-id' then
    last = info[i + 1]
  elseif info[i] == 'entries-added' then
    added = info[i + 1]
  elseif info[i] == 'recorded-first-entry-id' then
    first = info[i + 1]
  elseif info[i] == 'max-deleted-entry-id' then
    max_deleted = info[i + 1]
  end
end

local id = target
if target == '$' then
  id = last
elseif target == '0' then
  id = '0-0'
end
-- ENTRIESREAD so that Redis reports a valid lag at once (lag = entries-added - entries-read).
-- It is left out (-1) when the count cannot be exact:
-- * entries-added reached 2^53 (XSETID can set it): Lua reads it as an inexact double;
-- * an entry after the target was deleted (XDEL): it still counts in entries-added but
--   can no longer be counted (Redis itself reports no lag then, until the group passes it).
local exact = added < 9007199254740992
  and (length == 0 or max_deleted == '0-0' or compare(max_deleted, first) < 0 or compare(max_deleted, id) <= 0)
local entries_read = -1
local position = compare(id, last)
if not exact or position > 0 then
  -- (an ID after the last entry: Redis reports no lag until the group reaches it)
  entries_read = -1
elseif position == 0 then
  entries_read = added
elseif compare(id, '0-0') == 0 then
  entries_read = added - length  -- trimmed entries count as read
else
  local after = #redis.call('XRANGE', key, successor(id), '+', 'COUNT', cap + 1)
  if after <= cap then
    entries_read = added - after
  else
    local upto = #redis.call('XRANGE', key, '-', id, 'COUNT', cap + 1)
    if upto <= cap then
      entries_read = added - (length - upto)
    end
  end
end

if entries_read >= 0 then
  -- Formatted here: Redis would turn a large Lua number into '1.2e+15', not an integer.
  redis.call('XGROUP', 'SETID', key, group, id, 'ENTRIESREAD', string.format('%.0f', entries_read))
else
  redis.call('XGROUP', 'SETID', key, group, id)
end
local record = {token = token, to = ARGV[5], id = id, at = ARGV[6]}
if #earlier > 0 then
  record['earlier'] = earlier
end
redis.call('HSET', registry, field, cjson.encode(record))
-- A group re-created later must not skip what the reset asked to deliver again.
local owner = decode_record(redis.call('HGET', registry, ARGV[9]))
if owner and owner['at'] and compare(id, owner['at']) < 0 then
  owner['at'] = id
  redis.call('HSET', registry, ARGV[9], cjson.encode(owner))
end
return {'applied', id, entries_read}
