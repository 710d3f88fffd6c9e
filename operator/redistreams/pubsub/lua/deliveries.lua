-- Claims pending entries for a consumer, or moves them to a dead-letter stream, atomically.
-- KEYS[1] stream, KEYS[2] dead-letter stream ('' when there is none)
-- ARGV[1] mode: 'claim' or 'move'
-- claim: ARGV[2] group, ARGV[3] consumer, ARGV[4] min idle ms, ARGV[5] start ('-' or '(id'),
--        ARGV[6] count, ARGV[7] max deliveries (0 = no dead-lettering), ARGV[8] owner ('' = any)
--        returns {next start or '', claimed entries, dead-lettered ids, ids of deleted entries}
-- move:  ARGV[2] group, ARGV[3] consumer, ARGV[4] reason, ARGV[5..] ids still pending to consumer
--        returns {moved ids, ids of deleted entries}
local stream, dlq, mode = KEYS[1], KEYS[2], ARGV[1]

-- Copies the entry byte for byte (headers, body and any other field) and acknowledges it.
local function move(group, id, reason, deliveries)
  local entry = redis.call('XRANGE', stream, id, id)
  redis.call('XACK', stream, group, id)
  if #entry == 0 then return false end
  local args = {'XADD', dlq, '*'}
  for _, value in ipairs(entry[1][2]) do args[#args + 1] = value end
  for _, pair in ipairs({{'dead-letter-reason', reason}, {'dead-letter-stream', stream},
      {'dead-letter-group', group}, {'dead-letter-id', id}, {'dead-letter-deliveries', tostring(deliveries)}}) do
    args[#args + 1] = pair[1]
    args[#args + 1] = pair[2]
  end
  redis.call(unpack(args))
  return true
end

local moved, gone = {}, {}
if mode == 'move' then
  local group, consumer, reason = ARGV[2], ARGV[3], ARGV[4]
  for i = 5, #ARGV do
    local id = ARGV[i]
    local info = redis.call('XPENDING', stream, group, id, id, 1, consumer)
    if #info == 1 then
      if move(group, id, reason, info[1][4]) then moved[#moved + 1] = id else gone[#gone + 1] = id end
    end
  end
  return {moved, gone}
end

local group, consumer, min_idle, start, count = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local max_deliveries, owner = tonumber(ARGV[7]), ARGV[8]
local pending
if owner ~= '' then
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, start, '+', count, owner)
else
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, start, '+', count)
end
local claim = {}
for _, p in ipairs(pending) do
  local id, deliveries = p[1], p[4]
  if max_deliveries > 0 and deliveries >= max_deliveries then
    local reason = 'delivered ' .. deliveries .. ' times without acknowledgement'
    if move(group, id, reason, deliveries) then moved[#moved + 1] = id else gone[#gone + 1] = id end
  else
    claim[#claim + 1] = id
  end
end
local claimed = {}
if #claim > 0 then
  claimed = redis.call('XCLAIM', stream, group, consumer, min_idle, unpack(claim))
  -- XCLAIM drops entries deleted while pending (from the PEL too); report them.
  local returned = {}
  for _, entry in ipairs(claimed) do returned[entry[1]] = true end
  for _, id in ipairs(claim) do
    if not returned[id] and #redis.call('XRANGE', stream, id, id) == 0 then gone[#gone + 1] = id end
  end
end
local next_start = ''
if #pending == count then next_start = '(' .. pending[#pending][1] end
return {next_start, claimed, moved, gone}
