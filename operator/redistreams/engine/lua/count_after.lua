-- Count entries after an ID (exclusive), up to a cap, without sending them anywhere.
-- KEYS[1] stream; ARGV[1] ID; ARGV[2] cap
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
