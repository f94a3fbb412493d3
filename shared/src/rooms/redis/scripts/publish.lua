local now = tonumber(ARGV[2])
local repeat_seq, repeat_ts
if ARGV[10] == '1' then
  local seen = redis.call('GET', KEYS[5])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    repeat_seq = tonumber(string.sub(seen, 1, sep - 1))
    repeat_ts = string.sub(seen, sep + 1)
  end
end
local rate, burst = tonumber(ARGV[11]), tonumber(ARGV[12])
local tokens, at = refill(KEYS[4], now, rate / 1000, burst)
local keep = math.ceil(burst * 1000 / rate) + 1000
if tokens < 1 then
  store(KEYS[4], tokens, at, keep)
  return {'limited', string.format('%d', math.ceil((1 - tokens) * 1000 / rate))}
end
store(KEYS[4], tokens - 1, at, keep)
-- The sender is alive (it is talking): make it a member again, whatever the store forgot.
redis.call('ZADD', KEYS[1], ARGV[8], ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
if ARGV[15] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[7], ARGV[15])
  redis.call('PEXPIRE', KEYS[6], ARGV[9])
end
local epoch = current_epoch(ARGV[4], ARGV[6])
local frame, seq_s, ts_s
if repeat_seq then
  local last = tonumber(redis.call('HGET', KEYS[2], 'seq'))
  local len = redis.call('LLEN', KEYS[3])
  local index = repeat_seq - (last - len + 1)
  if index >= 0 and index < len then
    frame = redis.call('LINDEX', KEYS[3], index)
    seq_s = string.format('%d', repeat_seq)
    ts_s = repeat_ts
  end
end
if not frame then
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  local ts = now
  local last = redis.call('HMGET', KEYS[2], 'ts', 'bytes')
  local last_ts = tonumber(last[1] or '0')
  if last_ts > ts then ts = last_ts end
  seq_s = string.format('%d', seq)
  ts_s = string.format('%d', ts)
  local user = ''
  if ARGV[14] ~= '' then user = ',"user":' .. ARGV[14] end
  if ARGV[17] ~= '' then user = user .. ',"uid":' .. ARGV[17] end
  frame = '{"message":' .. ARGV[3] .. user .. ',"seq":' .. seq_s .. ',"epoch":"' .. epoch .. '","ts":' .. ts_s .. '}'
  -- The history is bounded by count and by bytes: the oldest frames go first, the newest always stays.
  local len = redis.call('RPUSH', KEYS[3], frame)
  local bytes = (tonumber(last[2]) or 0) + #frame
  local most, most_bytes = tonumber(ARGV[5]), tonumber(ARGV[16])
  while len > 1 and (len > most or bytes > most_bytes) do
    bytes = bytes - #redis.call('LPOP', KEYS[3])
    len = len - 1
  end
  if bytes < 0 then bytes = 0 end
  redis.call('HSET', KEYS[2], 'ts', ts_s, 'bytes', string.format('%d', bytes))
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  if ARGV[10] == '1' then
    redis.call('SET', KEYS[5], seq_s .. ':' .. ts_s, 'PX', ARGV[13])
  end
end
local out = {'ok', frame, seq_s, epoch, ts_s}
-- Members past their lifetime are left out, not removed: the join and presence scripts remove them and report
-- them, so their leave is announced.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')
for i = 1, #members do out[#out + 1] = members[i] end
return out
