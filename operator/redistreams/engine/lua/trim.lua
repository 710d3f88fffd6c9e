-- Retention for one stream, atomic so that no group can move between the safe-point
-- computation and the trim.
-- KEYS[1]  stream
-- ARGV[1]  max length, or -1
-- ARGV[2]  max age in milliseconds, or -1
-- ARGV[3]  1 to allow trimming entries not yet delivered or acknowledged, else 0
-- ARGV[4]  most entries removed by this call (keeps each call short)
-- ARGV[5]  the caller's clock in milliseconds, for a user the ACL denies TIME
-- Returns {removed, more (0|1), blocking group or '', 'pending'|'undelivered'|''}
local key = KEYS[1]
local max_length = tonumber(ARGV[1])
local max_age = tonumber(ARGV[2])
local allow_unconsumed = ARGV[3] == '1'
local step = tonumber(ARGV[4])

local refused = denied({{'TYPE', key}, {'XLEN', key}, {'XRANGE', key, '-', '+'}, {'XINFO', 'GROUPS', key},
                        {'XPENDING', key, 'g'}, {'XTRIM', key, 'MAXLEN', '0'}})
if refused then
  return refused
end
if redis.call('TYPE', key)['ok'] ~= 'stream' then
  return {0, 0, '', ''}
end
local length = redis.call('XLEN', key)
if length == 0 then
  return {0, 0, '', ''}
end

local function count_before(bound, limit)
  return #redis.call('XRANGE', key, '-', '(' .. bound, 'COUNT', limit)
end

-- How many head entries the limits ask to remove (at most one step).
local wanted = 0
if max_length >= 0 and length > max_length then
  wanted = math.min(length - max_length, step)
end
if max_age >= 0 and wanted < step then
  -- Milliseconds since 1970 stay far below 2^53, so this arithmetic is exact; a max age
  -- beyond the epoch (cutoff <= 0) leaves nothing old enough.
  local now_ms = tonumber(ARGV[5])
  if redis.acl_check_cmd('TIME') then
    local now = redis.call('TIME')
    now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  end
  if now_ms > max_age then
    wanted = math.max(wanted, count_before(string.format('%.0f', now_ms - max_age) .. '-0', step))
  end
end
if wanted == 0 then
  return {0, 0, '', ''}
end

-- The safe point: the oldest entry some group has not acknowledged or not received.
local removable = wanted
local blocker, why = '', ''
if not allow_unconsumed then
  local bound
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local name, last
    for i = 1, #group, 2 do
      if group[i] == 'name' then
        name = group[i + 1]
      elseif group[i] == 'last-delivered-id' then
        last = group[i + 1]
      end
    end
    -- nil after the largest ID: the group has received everything there can be.
    local group_bound, reason = successor(last), 'undelivered'
    local pending = redis.call('XPENDING', key, name)
    if pending[1] > 0 and (group_bound == nil or compare(pending[2], group_bound) < 0) then
      group_bound, reason = pending[2], 'pending'
    end
    -- A group that received and acknowledged everything holds nothing back.
    if group_bound ~= nil and (bound == nil or compare(group_bound, bound) < 0) then
      bound, blocker, why = group_bound, name, reason
    end
  end
  if bound ~= nil then
    removable = count_before(bound, wanted)
  end
end
if removable >= wanted then
  -- Only name a group when it actually held entries back.
  blocker, why = '', ''
end
if removable > 0 then
  redis.call('XTRIM', key, 'MAXLEN', '=', length - removable)
end
local more = 0
if removable == step then
  more = 1
end
return {removable, more, blocker, why}
