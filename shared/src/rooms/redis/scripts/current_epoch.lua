local function server_run()
  local info = redis.pcall('INFO', 'server')
  if type(info) ~= 'string' then return nil end
  return string.match(info, 'run_id:(%x+)')
end
local function carry_over(old, epoch, ttl)
  local frames = redis.call('LRANGE', KEYS[3], 0, -1)
  redis.call('DEL', KEYS[3])
  local from, to = '"epoch":"' .. old .. '"', '"epoch":"' .. epoch .. '"'
  local batch = {}
  for i = 1, #frames do
    local s, e = string.find(frames[i], from, 1, true)
    if s then
      batch[#batch + 1] = string.sub(frames[i], 1, s - 1) .. to .. string.sub(frames[i], e + 1)
    else
      batch[#batch + 1] = frames[i]
    end
    if #batch == 100 or (i == #frames and #batch > 0) then
      redis.call('RPUSH', KEYS[3], unpack(batch))
      batch = {}
    end
  end
  redis.call('PEXPIRE', KEYS[3], ttl)
end
local function current_epoch(candidate, ttl)
  local run = server_run()
  local state = redis.call('HMGET', KEYS[2], 'epoch', 'run')
  local epoch = state[1]
  if not epoch then
    epoch = candidate
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0, 'ts', 0, 'bytes', 0)
    redis.call('PEXPIRE', KEYS[2], ttl)
  elseif run and state[2] ~= run then
    carry_over(epoch, candidate, ttl)
    epoch = candidate
    redis.call('HSET', KEYS[2], 'epoch', epoch)
  end
  if run and state[2] ~= run then redis.call('HSET', KEYS[2], 'run', run) end
  return epoch
end
