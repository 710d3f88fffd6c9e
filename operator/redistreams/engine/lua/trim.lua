-- Retention for one stream, atomic so that no group can move between the safe-point
-- computation and the trim.
-- KEYS[1]  stream
-- ARGV[1]  max length, or -1
-- ARGV[2]  max age in milliseconds, or -1
-- ARGV[3]  1 to allow trimming entries not yet delivered or acknowledged, else 0
-- ARGV[4]  most entries removed by this call (keeps each call short)
-- Returns {removed, more (0|1), blocking group or '', 'pending'|'undelivered'|''}
local key = KEYS[1]
local max_length = tonumber(ARGV[1])
local max_age = tonumber(ARGV[2])
local allow_unconsumed = ARGV[3] == '1'
local step = tonumber(ARGV[4])

if redis.call('TYPE', key)['ok'] ~= 'stream' then
  return {0, 0, '', ''}
end
local length = redis.call('XLEN', key)
if length == 0 then
  return {0, 0, '', ''}
end

local function increment(number)
  local digits, carry = {}, 1
  for i = #number, 1, -1 do
    local d = string.byte(number, i) - 48 + carry
    if d == 10 then
      d, carry = 0, 1
    else
      carry = 0
    end
    digits[i] = string.char(48 + d)
  end
  local result = table.concat(digits)
  if carry == 1 then
    result = '1' .. result
  end
  return result
end
local function successor(id)
  local ms, seq = split(id)
  if seq == '18446744073709551615' then
    return increment(ms) .. '-0'
  end
  return ms .. '-' .. increment(seq)
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
  local now = redis.call('TIME')
  local cutoff = string.format('%.0f', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age)
  if tonumber(cutoff) > 0 then
    wanted = math.max(wanted, count_before(cutoff .. '-0', step))
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
    local group_bound, reason = successor(last), 'undelivered'
    local pending = redis.call('XPENDING', key, name)
    if pending[1] > 0 and compare(pending[2], group_bound) < 0 then
      group_bound, reason = pending[2], 'pending'
    end
    if bound == nil or compare(group_bound, bound) < 0 then
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
