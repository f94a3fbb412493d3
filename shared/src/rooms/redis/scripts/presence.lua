local expired = expire(ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local limit = tonumber(ARGV[4])
local names, seen = {}, {}
for i = 1, #members do
  if #names >= limit then break end
  local stored = redis.call('HGET', KEYS[2], members[i])
  local uid = person_of(stored)
  if uid then
    if not seen[uid] then
      seen[uid] = true
      names[#names + 1] = stored
    end
  elseif stored then
    names[#names + 1] = stored
  end
end
local allowed, recount = damp(#expired, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
local head = redis.call('HMGET', KEYS[6], 'epoch', 'seq')
local out = {tostring(people(#members)), tostring(allowed), recount, head[1] or '', head[2] or '0'}
push_counted(out, expired)
push_counted(out, names)
push_watchers(out, ARGV[2])
return out
