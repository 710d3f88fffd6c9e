-- Shared by the scripts that read or write ownership records; prepended after ids.lua.
-- A record is JSON: {cluster, namespace, name, created[, start, at, deletionPolicy]};
-- deletionPolicy only when 'Delete' (absent: Retain, as in records written before it).

-- Redis runs a script's commands one by one and keeps what ran before an error: a
-- command the ACL refuses half way would leave a half-done step (a stream created, its
-- record not written). Scripts check every command of the path they take before the
-- first write, and answer NOPERM naming the command, as Redis itself would.
local function denied(commands)
  for _, command in ipairs(commands) do
    if not redis.acl_check_cmd(unpack(command)) then
      local name, key = string.lower(command[1]), command[2]
      if name == 'xgroup' or name == 'xinfo' then
        name, key = name .. '|' .. string.lower(command[2]), command[3]
      end
      return redis.error_reply("NOPERM this user has no permissions to run the '" .. name ..
        "' command or to access the key '" .. tostring(key) .. "'")
    end
  end
  return nil
end

-- The record as a table; false when unreadable (it still marks the name as taken).
local function decode_record(raw)
  if not raw then
    return nil
  end
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' then
    return false
  end
  return record
end

local function same_owner(record, cluster, namespace, name)
  return record and record['cluster'] == cluster and record['namespace'] == namespace and record['name'] == name
end

-- The record at ``field`` and nil, or nil and its raw text when another owner holds it.
local function own_record(registry, field, cluster, namespace, name)
  local raw = redis.call('HGET', registry, field)
  local record = decode_record(raw)
  if raw and not same_owner(record, cluster, namespace, name) then
    return nil, raw
  end
  return record, nil
end

-- 'Delete', or nil for anything else (Retain): the value records carry.
local function record_policy(policy)
  if policy == 'Delete' then
    return 'Delete'
  end
  return nil
end

local function encode_record(cluster, namespace, name, created, start, at, policy)
  local record = {cluster = cluster, namespace = namespace, name = name, created = created,
                  deletionPolicy = record_policy(policy)}
  if start then
    record['start'] = start
  end
  if at then
    record['at'] = at
  end
  return cjson.encode(record)
end

-- Decimal strings, so 64-bit values keep every digit (Lua numbers are doubles).
local function decrement(number)
  local digits, i = {}, #number
  for j = 1, #number do
    digits[j] = string.byte(number, j) - 48
  end
  while digits[i] == 0 do
    digits[i] = 9
    i = i - 1
  end
  digits[i] = digits[i] - 1
  local out = {}
  for j = 1, #digits do
    out[j] = string.char(48 + digits[j])
  end
  local text = string.gsub(table.concat(out), '^0+', '')
  if text == '' then
    return '0'
  end
  return text
end

-- The ID just before `id`; '0-0' for '0-0'.
local function predecessor(id)
  local ms, seq = split(id)
  if seq ~= '0' then
    return ms .. '-' .. decrement(seq)
  end
  if ms == '0' then
    return '0-0'
  end
  return decrement(ms) .. '-18446744073709551615'
end

-- XINFO GROUPS entry of one group as a table, or nil.
local function group_info(key, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local entry = {}
    for i = 1, #g, 2 do
      entry[g[i]] = g[i + 1]
    end
    if entry['name'] == group then
      return entry
    end
  end
  return nil
end

-- A position from which re-creating the group loses nothing: its last-delivered ID, or
-- just before its oldest pending entry (delivered, never acknowledged).
local function safe_position(key, group, info)
  local at = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    local oldest = predecessor(redis.call('XPENDING', key, group)[2])
    if compare(oldest, at) < 0 then
      at = oldest
    end
  end
  return at
end
