local function refill(key, now, per_ms, burst, ...)
  local b = redis.call('HMGET', key, 't', 'at', ...)
  local tokens = tonumber(b[1]) or burst
  local at = tonumber(b[2]) or now
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * per_ms)
    at = now
  end
  return tokens, at, b[3]
end
local function store(key, tokens, at, keep_ms, ...)
  redis.call('HSET', key, 't', tostring(tokens), 'at', string.format('%d', at), ...)
  redis.call('PEXPIRE', key, keep_ms)
end
