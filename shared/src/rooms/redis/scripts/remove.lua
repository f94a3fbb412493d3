local names = {}
for i = 5, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    remove(ARGV[i], names)
  else
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('SREM', KEYS[3], ARGV[i])
  end
end
local allowed, recount = damp(#names, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
local out = {tostring(people(redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf'))), tostring(allowed), recount}
push_counted(out, names)
push_watchers(out, nil)
return out
