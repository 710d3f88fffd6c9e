-- Shared by scripts that compare entry IDs; prepended to them when they are loaded.
-- IDs are pairs of unsigned 64-bit decimals. Lua numbers are doubles (exact only up to
-- 2^53), so IDs are compared and stepped as strings, never converted to numbers.
local ID_PART_MAX = '18446744073709551615'  -- 2^64 - 1

-- '<ms>-<seq>' into its two decimal strings; a bare '<ms>' means '<ms>-0', as in Redis.
local function split(id)
  local dash = string.find(id, '-', 1, true)
  if dash == nil then
    return id, '0'
  end
  return string.sub(id, 1, dash - 1), string.sub(id, dash + 1)
end
-- Redis accepts leading zeros ('007-1'); they would defeat the length comparison below.
local function canonical_number(n)
  return (string.gsub(n, '^0+(%d)', '%1'))
end
local function compare_number(a, b)
  a, b = canonical_number(a), canonical_number(b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  if a == b then
    return 0
  end
  return a < b and -1 or 1
end
local function compare(a, b)
  local a_ms, a_seq = split(a)
  local b_ms, b_seq = split(b)
  local c = compare_number(a_ms, b_ms)
  if c ~= 0 then
    return c
  end
  return compare_number(a_seq, b_seq)
end
-- n + 1 for a decimal below 2^64 - 1.
local function increment_number(n)
  local digits, carry = {}, 1
  for i = #n, 1, -1 do
    local d = string.byte(n, i) - 48 + carry
    carry = d == 10 and 1 or 0
    digits[i] = string.char(48 + d % 10)
  end
  local result = table.concat(digits)
  return carry == 1 and '1' .. result or result
end
-- The ID right after `id`, or nil after the largest ID: nothing can follow it, so a
-- group that received it has received every entry there can be.
local function successor(id)
  local ms, seq = split(id)
  ms, seq = canonical_number(ms), canonical_number(seq)
  if seq ~= ID_PART_MAX then
    return ms .. '-' .. increment_number(seq)
  end
  if ms ~= ID_PART_MAX then
    return increment_number(ms) .. '-0'
  end
  return nil
end
