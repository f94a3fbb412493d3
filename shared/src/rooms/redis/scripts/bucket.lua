-- Token buckets: a hash of `t` tokens at `at` (ms), refilled at `per_ms` tokens a millisecond up to `burst`.
-- A bucket never seen is full. `...` names more fields of the hash to read along (returned after `at`).
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
-- Writes the bucket back (with `...`, more field-value pairs) and keeps it `keep_ms`.
local function store(key, tokens, at, keep_ms, ...)
  redis.call('HSET', key, 't', tostring(tokens), 'at', string.format('%d', at), ...)
  redis.call('PEXPIRE', key, keep_ms)
end
