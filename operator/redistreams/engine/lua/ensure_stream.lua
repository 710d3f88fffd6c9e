-- Create an empty stream if the key does not exist, atomically.
-- Returns "created", or the type of the key that is already there.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' then
  return kind
end
-- A group created with MKSTREAM and destroyed again leaves an empty stream with no
-- entry ever added, unlike XADD followed by XDEL.
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '$', 'MKSTREAM')
redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
return 'created'
