local now, per_minute, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
local tokens, at = refill(KEYS[1], now, per_minute / 60000, per_minute)
local out
if tokens < 1 then
  out = {'fast', string.format('%d', math.ceil((1 - tokens) * 60000 / per_minute))}
else
  tokens = tokens - 1
  if not redis.call('ZSCORE', KEYS[2], ARGV[4]) and redis.call('ZCARD', KEYS[2]) >= most then
    out = {'many'}
  else
    redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
    out = {'admitted'}
  end
end
store(KEYS[1], tokens, at, 61000)
return out
