local function person_of(stored)
  if not stored then return nil end
  local tab = string.find(stored, '\t', 1, true)
  if tab then return string.sub(stored, 1, tab - 1) end
  return nil
end
local function arrived(stored)
  local uid = person_of(stored)
  if not uid then return true end
  redis.call('HINCRBY', KEYS[5], '', 1)
  return redis.call('HINCRBY', KEYS[5], uid, 1) == 1
end
local function departed(stored)
  local uid = person_of(stored)
  if not uid then return true end
  if redis.call('HEXISTS', KEYS[5], uid) == 0 then return true end
  redis.call('HINCRBY', KEYS[5], '', -1)
  if redis.call('HINCRBY', KEYS[5], uid, -1) > 0 then return false end
  redis.call('HDEL', KEYS[5], uid)
  return true
end
local function people(connections)
  local tabs = tonumber(redis.call('HGET', KEYS[5], '')) or 0
  local persons = redis.call('HLEN', KEYS[5])
  if redis.call('HEXISTS', KEYS[5], '') == 1 then persons = persons - 1 end
  local count = connections - tabs + persons
  if count < 0 then count = 0 end
  return count
end
local function remove(conn, names)
  local stored = redis.call('HGET', KEYS[2], conn)
  redis.call('HDEL', KEYS[2], conn)
  redis.call('SREM', KEYS[3], conn)
  if departed(stored) then names[#names + 1] = stored or '' end
end
local function expire(cutoff)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
  local names = {}
  for i = 1, #gone do remove(gone[i], names) end
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
