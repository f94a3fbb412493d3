local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
  at = now
end
local out
if tokens >= 1 then
  tokens = tokens - 1
  out = {'granted'}
else
  -- Refused into debt, down to -burst: a client that goes on sending waits longer, and at the floor it is closed.
  tokens = math.max(-burst, tokens - 1)
  local close = '0'
  if tokens <= -burst then close = '1' end
  out = {'refused', string.format('%d', math.ceil((1 - tokens) * 1000 / rate)), close}
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * burst * 1000 / rate) + 1000)
return out
