-- Count entries after an ID (exclusive), up to a cap, without sending them anywhere.
-- KEYS[1] stream; ARGV[1] ID, as Redis reports it; ARGV[2] cap
-- Checked first, so a refusal is a NOPERM naming it, as from the other scripts.
if not redis.acl_check_cmd('XRANGE', KEYS[1], '-', '+') then
  return redis.error_reply("NOPERM this user has no permissions to run the 'xrange' command or to access the key '" ..
    KEYS[1] .. "'")
end
-- Nothing follows the largest ID, and Redis rejects '(' before it.
if ARGV[1] == '18446744073709551615-18446744073709551615' then
  return 0
end
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
