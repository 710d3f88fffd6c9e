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
-- Returns {'applied', id, entries-read or -1}, {'seen', recorded id}, {'nogroup', ''}
-- or {<key type>, ''} when the key is not a stream.
local key, registry = KEYS[1], KEYS[2]
local group, field, token, target = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cap = tonumber(ARGV[7])

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
local length, last, added
for i = 1, #info, 2 do
  if info[i] == 'length' then
    length = info[i + 1]
  elseif info[i] == 'last-generated-id' then
    last = info[i + 1]
  elseif info[i] == 'entries-added' then
    added = info[i + 1]
  end
end


-- ENTRIESREAD so that Redis reports a valid lag at once (lag = entries-added - entries-read).
local id, entries_read = target, -1
if target == '$' then
  id, entries_read = last, added
elseif target == '0' then
  id, entries_read = '0-0', added - length  -- trimmed entries count as read
elseif compare(target, last) <= 0 then
  local after = #redis.call('XRANGE', key, '(' .. target, '+', 'COUNT', cap + 1)
  if after <= cap then
    entries_read = added - after
  else
    local upto = #redis.call('XRANGE', key, '-', target, 'COUNT', cap + 1)
    if upto <= cap then
      entries_read = added - (length - upto)
    end
  end
end
-- (an ID after the last entry gets no ENTRIESREAD: Redis reports no lag until it is reached)

if entries_read >= 0 then
  redis.call('XGROUP', 'SETID', key, group, id, 'ENTRIESREAD', entries_read)
else
  redis.call('XGROUP', 'SETID', key, group, id)
end
local record = {token = token, to = ARGV[5], id = id, at = ARGV[6]}
if #earlier > 0 then
  record['earlier'] = earlier
end
redis.call('HSET', registry, field, cjson.encode(record))
return {'applied', id, entries_read}
