local function current_epoch(candidate, ttl)
  local epoch = redis.call('HGET', KEYS[2], 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0, 'ts', 0, 'bytes', 0)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  return epoch
end
