-- Count entries after an ID (exclusive), up to a cap, without sending them anywhere.
-- KEYS[1] stream; ARGV[1] ID, as Redis reports it; ARGV[2] cap
-- Nothing follows the largest ID, and Redis rejects '(' before it.
if ARGV[1] == '18446744073709551615-18446744073709551615' then
  return 0
end
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
