package redis

import (
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// The scripts keep each topic's state in three places that share the
// topic's hash tag, so in a cluster they live in one slot:
//
//	KEYS[1]  <prefix>{<topic>}:meta  hash: offset, epoch
//	KEYS[2]  <prefix>{<topic>}:log   stream: one entry per message, ID <offset>-0
//	KEYS[3]  <prefix>{<topic>}       the topic's pub/sub channel
//
// A missing meta key means the topic has no epoch (never used, expired, or
// Redis restarted empty): the script creates one from ARGV[1], a random
// candidate, and drops any stale log, atomically, so every node agrees.

// ensureEpoch is the head of sinceScript; publishScript does the same per
// message.
const ensureEpoch = `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
`

// publishScript stores a batch of messages in one step: for each, unless
// its idempotency key is already known, it assigns the topic's next
// offset, appends to history and remembers the key; each topic's
// position is read once and written back, with its TTLs refreshed, once
// per run. The checks come first, so a batch is refused whole or stored
// whole.
// Then it relays what it stored: one Redis message per channel, in the
// forms decodeRelayed reads ("<offset> <epoch> <body>" for a message
// alone, the B-framed list for several, split at relayBatchBytes so that
// no subscriber's output buffer limit is met).
//
// KEYS, four per message (all of one topic share its hash tag):
//
//	meta, log, channel, and the idempotency key <prefix>{<topic>}:idem:<key>
//
// ARGV[1] epoch candidate   ARGV[2] PUBLISH or SPUBLISH
// ARGV[3] idempotency window (ms)
// then eight per message: body, "1" if it has an idempotency key, the
// wildcard channel or "" (cluster mode: also PUBLISH there), id, time
// (ns), and its topic's history size, history TTL (ms) and meta TTL (ms),
// which differ by topic (namespaces).
//
// The result holds one entry per message: {offset, epoch} when stored, or
// {offset, epoch, id, time} of the first publish when its key was known.
var publishScript = goredis.NewScript(strings.Replace(`
local relayed, order = {}, {}
local function flush(r)
  local payload = r.parts[1]
  if #r.parts > 1 then
    local framed = {'B'}
    for _, p in ipairs(r.parts) do
      framed[#framed+1] = #p .. ':' .. p
    end
    payload = table.concat(framed)
  end
  redis.call(r.cmd, r.channel, payload)
  r.parts, r.size = {}, 0
end
local function relay(cmd, channel, payload)
  local key = cmd .. ' ' .. channel
  local r = relayed[key]
  if not r then
    r = {cmd = cmd, channel = channel, parts = {}, size = 0}
    relayed[key] = r
    order[#order+1] = r
  elseif #r.parts > 0 and r.size + #payload > RELAY_BATCH_BYTES then
    flush(r)
  end
  r.parts[#r.parts+1] = payload
  r.size = r.size + #payload + 12
end
local n = #KEYS / 4
local checked = {}
for i = 0, n - 1 do
  local meta = KEYS[4*i+1]
  if not checked[meta] then
    checked[meta] = true
    local mt = redis.call('TYPE', meta)['ok']
    local lt = redis.call('TYPE', KEYS[4*i+2])['ok']
    if (mt ~= 'none' and mt ~= 'hash') or (lt ~= 'none' and lt ~= 'stream') then
      return redis.error_reply('WRONGTYPE tidings keys of another type at ' .. meta)
    end
  end
end
-- Each topic's position is read once and written back once, after its
-- last message, with its TTLs.
local topics, touched = {}, {}
local out = {}
for i = 0, n - 1 do
  local meta, log, channel, idem = KEYS[4*i+1], KEYS[4*i+2], KEYS[4*i+3], KEYS[4*i+4]
  local a = 3 + 8*i
  local body, keyed, wild, id, time = ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4], ARGV[a+5]
  local size, ttl, metattl = ARGV[a+6], ARGV[a+7], ARGV[a+8]
  local first = false
  if keyed == '1' then
    first = redis.call('GET', idem)
  end
  if first then
    local offset, epoch, fid, ftime = string.match(first, '^(%d+) (%S+) (%S+) (%-?%d+)$')
    out[#out+1] = {tonumber(offset), epoch, fid, ftime}
  else
    local t = topics[meta]
    if not t then
      local pos = redis.call('HMGET', meta, 'epoch', 'offset')
      t = {epoch = pos[1], offset = tonumber(pos[2]) or 0}
      if not t.epoch then
        t.epoch, t.offset = ARGV[1], 0
        redis.call('DEL', log)
      end
      topics[meta] = t
      touched[#touched+1] = meta
    end
    t.offset = t.offset + 1
    t.log, t.ttl, t.metattl = log, ttl, metattl
    local offset, epoch = t.offset, t.epoch
    redis.call('XADD', log, 'MAXLEN', '~', size, offset .. '-0', 'm', body)
    local payload = offset .. ' ' .. epoch .. ' ' .. body
    relay(ARGV[2], channel, payload)
    if wild ~= '' then
      relay('PUBLISH', wild, payload)
    end
    if keyed == '1' then
      redis.call('SET', idem, offset .. ' ' .. epoch .. ' ' .. id .. ' ' .. time, 'PX', ARGV[3])
    end
    out[#out+1] = {offset, epoch}
  end
end
for _, meta in ipairs(touched) do
  local t = topics[meta]
  redis.call('HSET', meta, 'epoch', t.epoch, 'offset', t.offset)
  redis.call('PEXPIRE', meta, t.metattl)
  redis.call('PEXPIRE', t.log, t.ttl)
end
for _, r in ipairs(order) do
  if #r.parts > 0 then
    flush(r)
  end
end
return out
`, "RELAY_BATCH_BYTES", strconv.Itoa(relayBatchBytes), 1))

// relayBatchBytes bounds the payload of one relayed Redis message that
// carries several messages; one message larger than it travels alone.
// Redis closes a subscriber whose output buffer passes 32 MB.
const relayBatchBytes = 256 << 10

// sinceScript returns the topic's position and, when ARGV[3] is the
// current epoch, the history entries after offset ARGV[4].
//
//	ARGV[1] epoch candidate   ARGV[2] meta TTL (ms)
//	ARGV[3] since epoch ("" for position only)   ARGV[4] since offset
var sinceScript = goredis.NewScript(ensureEpoch + `
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
if ARGV[3] ~= epoch or tonumber(ARGV[4]) >= offset then
  return {offset, epoch, {}}
end
return {offset, epoch, redis.call('XRANGE', KEYS[2], (tonumber(ARGV[4]) + 1) .. '-0', '+')}
`)
