-- Claims pending entries for a consumer, or moves them to a dead-letter stream, atomically.
-- KEYS[1] stream, KEYS[2] dead-letter stream; without KEYS[2] (Redis Cluster, the dead-letter
--   stream in another slot) entries to move are handed off instead: claimed by the consumer
--   (JUSTID: idle reset, delivery count kept) and returned, for the caller to copy and
--   then acknowledge
-- ARGV[1] mode: 'claim' or 'move'
-- claim: ARGV[2] group, ARGV[3] consumer, ARGV[4] min idle ms, ARGV[5] start ('-' or '(id'),
--        ARGV[6] count, ARGV[7] max deliveries (0 = no dead-lettering), ARGV[8] owner ('' = any),
--        ARGV[9..] ids to leave alone (held by the caller, or their ack is on its way)
--        returns {next start or '', claimed entries, dead-lettered ids, ids of deleted entries,
--                 {id, error, id, error, ...} of entries that could not be dead-lettered,
--                 handed-off entries {{id, reason, deliveries, fields}, ...}}
-- move:  ARGV[2] group, ARGV[3] consumer, ARGV[4] reason, ARGV[5..] ids still pending to consumer
--        returns {moved ids, ids of deleted entries, {id, error, ...} not moved, handed-off entries}
local stream, dlq, mode, group = KEYS[1], KEYS[2], ARGV[1], ARGV[2]

-- The largest entry ID: nothing comes after it, and Redis refuses '(' in front of it.
local MAX_ID = '18446744073709551615-18446744073709551615'

local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

-- Redis keeps what a script wrote before a command failed, and inside a script its ACL
-- error does not name the command. So every command of a path is checked before the
-- first write, and a refusal is answered as Redis answers it outside scripts.
local function refused(command)
  if redis.acl_check_cmd(unpack(command)) then return nil end
  return "NOPERM this user has no permissions to run the '" .. string.lower(command[1]) ..
    "' command or to access the key '" .. command[2] .. "'"
end

local function first_refused(commands)
  for _, command in ipairs(commands) do
    local text = refused(command)
    if text then return text end
  end
  return nil
end

-- What a move needs beyond reading: checked once, at the first move. A refusal fails the
-- moves only (the entries stay pending); claiming goes on.
local move_refused
local function check_move()
  if dlq == nil then return false end  -- handing off: the caller's copy is checked by Redis itself
  if move_refused == nil then
    move_refused = first_refused({{'XADD', dlq, '*', 'f', 'v'}, {'XACK', stream, group, '0-1'}}) or false
  end
  return move_refused
end

-- Copies the entry byte for byte (headers, body and any other field), then acknowledges it.
-- The copy goes first and through pcall: Redis does not undo a script's earlier writes when a
-- later command fails, so acknowledging first would lose the entry whenever the copy fails
-- (a dead-letter key of another type). Returns 'moved', 'gone' (deleted while pending) or the
-- error text, in which case the entry is still pending.
local function move(id, reason, deliveries)
  local denied = check_move()
  if denied then return denied end
  local entry = redis.call('XRANGE', stream, id, id)
  if #entry == 0 then
    redis.call('XACK', stream, group, id)
    return 'gone'
  end
  if dlq == nil then
    redis.call('XCLAIM', stream, group, ARGV[3], 0, id, 'JUSTID')
    return {id, reason, tostring(deliveries), entry[1][2]}
  end
  local args = {'XADD', dlq, '*'}
  for _, value in ipairs(entry[1][2]) do args[#args + 1] = value end
  for _, pair in ipairs({{'dead-letter-reason', reason}, {'dead-letter-stream', stream},
      {'dead-letter-group', group}, {'dead-letter-id', id}, {'dead-letter-deliveries', tostring(deliveries)}}) do
    args[#args + 1] = pair[1]
    args[#args + 1] = pair[2]
  end
  local copied = redis.pcall(unpack(args))
  if failed(copied) then return copied.err end
  local acked = redis.pcall('XACK', stream, group, id)
  if failed(acked) then return 'copied, but not acknowledged: ' .. acked.err end
  return 'moved'
end

local moved, gone, errors, handed = {}, {}, {}, {}
local function record(id, outcome)
  if type(outcome) == 'table' then
    handed[#handed + 1] = outcome
  elseif outcome == 'moved' then
    moved[#moved + 1] = id
  elseif outcome == 'gone' then
    gone[#gone + 1] = id
  else
    errors[#errors + 1] = id
    errors[#errors + 1] = outcome
  end
end

local reading = {{'XPENDING', stream, group}, {'XRANGE', stream, '-', '+'}}

if mode == 'move' then
  local denied = first_refused(reading)
  if denied then return redis.error_reply(denied) end
  local consumer, reason = ARGV[3], ARGV[4]
  for i = 5, #ARGV do
    local id = ARGV[i]
    local info = redis.call('XPENDING', stream, group, id, id, 1, consumer)
    if #info == 1 then record(id, move(id, reason, info[1][4])) end
  end
  return {moved, gone, errors, handed}
end

local consumer, min_idle, start, count = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
reading[#reading + 1] = {'XCLAIM', stream, group, consumer, '0', '0-1'}
local denied = first_refused(reading)
if denied then return redis.error_reply(denied) end
local max_deliveries, owner = tonumber(ARGV[7]), ARGV[8]
local skip = {}
for i = 9, #ARGV do skip[ARGV[i]] = true end
local pending
if owner ~= '' then
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, start, '+', count, owner)
else
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, start, '+', count)
end
local claim = {}
for _, p in ipairs(pending) do
  local id, deliveries = p[1], p[4]
  if skip[id] then
    -- held by the caller: neither handed out again nor dead-lettered under its feet
  elseif max_deliveries > 0 and deliveries >= max_deliveries then
    -- Not claimed when the move fails: over its limit, it must not reach the application again.
    record(id, move(id, 'delivered ' .. deliveries .. ' times without acknowledgement', deliveries))
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
if #pending == count and pending[#pending][1] ~= MAX_ID then next_start = '(' .. pending[#pending][1] end
return {next_start, claimed, moved, gone, errors, handed}
