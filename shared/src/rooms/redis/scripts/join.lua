local expired = expire(ARGV[1])
local fresh = not redis.call('ZSCORE', KEYS[1], ARGV[2])
if fresh and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
  return {'full'}
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local newcomer = fresh
if fresh then
  newcomer = arrived(ARGV[6])
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
end
local events = #expired
if newcomer then events = events + 1 end
local allowed, recount = damp(events, tonumber(ARGV[3]), tonumber(ARGV[7]), tonumber(ARGV[8]))
local head = redis.call('HMGET', KEYS[6], 'epoch', 'seq')
local out = {'joined', newcomer and '1' or '0', tostring(people(redis.call('ZCARD', KEYS[1]))), tostring(allowed), recount, head[1] or '', head[2] or '0'}
push_counted(out, expired)
push_watchers(out, ARGV[2])
return out
