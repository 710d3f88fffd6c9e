-- Shared by scripts that compare entry IDs; prepended to them when they are loaded.
-- IDs are pairs of unsigned 64-bit decimals; compare them as strings, not as doubles.
local function split(id)
  local dash = string.find(id, '-', 1, true)
  return string.sub(id, 1, dash - 1), string.sub(id, dash + 1)
end
local function compare_number(a, b)
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
