local epoch = current_epoch(ARGV[3], ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[2], 'seq'))
local len = redis.call('LLEN', KEYS[3])
local first = last - len + 1
local after = tonumber(ARGV[1])
local start = 0
local complete
if after < 0 then
  complete = first <= 1
elseif ARGV[2] ~= '' and ARGV[2] ~= epoch then
  complete = false
else
  start = after - first + 1
  if start < 0 then start = 0 end
  if start > len then start = len end
  complete = after + 1 >= first
end
local out = {epoch, complete and '1' or '0'}
if start < len then
  local frames = redis.call('LRANGE', KEYS[3], start, -1)
  for i = 1, #frames do out[#out + 1] = frames[i] end
end
return out
