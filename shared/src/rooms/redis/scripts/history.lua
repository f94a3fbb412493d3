local epoch = current_epoch(ARGV[3], ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[2], 'seq'))
local len = redis.call('LLEN', KEYS[3])
local first = last - len + 1
local after = tonumber(ARGV[1])
local page = tonumber(ARGV[5])
local frames, complete, more = {}, false, false
if after < 0 then
  -- The most recent messages that fit in a page, oldest first.
  local all = redis.call('LRANGE', KEYS[3], 0, -1)
  local bytes, from = 0, #all + 1
  for i = #all, 1, -1 do
    if from <= #all and bytes + #all[i] > page then break end
    bytes = bytes + #all[i]
    from = i
  end
  for i = from, #all do frames[#frames + 1] = all[i] end
  complete = first + from - 1 <= 1
else
  local start = 0
  if ARGV[2] ~= '' and ARGV[2] ~= epoch then
    complete = false
  else
    start = after - first + 1
    if start < 0 then start = 0 end
    if start > len then start = len end
    complete = after + 1 >= first
  end
  -- What follows, up to a page: at least one message, so a reader paging through always moves on.
  local rest = {}
  if start < len then rest = redis.call('LRANGE', KEYS[3], start, -1) end
  local bytes = 0
  for i = 1, #rest do
    if #frames > 0 and bytes + #rest[i] > page then
      more = true
      break
    end
    bytes = bytes + #rest[i]
    frames[#frames + 1] = rest[i]
  end
end
local out = {epoch, complete and '1' or '0', more and '1' or '0'}
for i = 1, #frames do out[#out + 1] = frames[i] end
return out
