local function expire(cutoff)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
  local names = {}
  for i = 1, #gone do
    names[#names + 1] = redis.call('HGET', KEYS[2], gone[i]) or ''
    redis.call('HDEL', KEYS[2], gone[i])
    redis.call('SREM', KEYS[3], gone[i])
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff) end
  return names
end
local function push_counted(out, list)
  out[#out + 1] = tostring(#list)
  for i = 1, #list do out[#out + 1] = list[i] end
end
local function push_watchers(out, except)
  local watchers = redis.call('SMEMBERS', KEYS[3])
  for i = 1, #watchers do
    if watchers[i] ~= except then out[#out + 1] = watchers[i] end
  end
end
local function damp(n, now, rate, burst)
  if n == 0 then return 0, '0' end
  local tokens, at, was_missed = refill(KEYS[4], now, rate / 1000, burst, 'missed')
  local missed = tonumber(was_missed) or 0
  local allowed = math.min(n, math.floor(tokens))
  tokens = tokens - allowed
  local recount = '0'
  if allowed > 0 then
    if missed > 0 or allowed < n or tokens < 1 then recount = '1' end
    missed = n - allowed
  else
    missed = missed + n
  end
  store(KEYS[4], tokens, at, math.ceil(burst * 1000 / rate) + 1000, 'missed', missed)
  return allowed, recount
end
