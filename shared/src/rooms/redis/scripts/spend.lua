local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, at = refill(KEYS[1], now, rate / 1000, burst)
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
store(KEYS[1], tokens, at, math.ceil(2 * burst * 1000 / rate) + 1000)
return out
