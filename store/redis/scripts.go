package redis

import goredis "github.com/redis/go-redis/v9"

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

// ensureEpoch is the common head of the scripts.
const ensureEpoch = `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
`

// publishScript assigns the next offset, appends to history, refreshes the
// TTLs and publishes "<offset> <epoch> <body>" on the topic's channel, all
// in one step.
//
//	ARGV[1] epoch candidate   ARGV[2] history size   ARGV[3] history TTL (ms)
//	ARGV[4] meta TTL (ms)      ARGV[5] body          ARGV[6] PUBLISH or SPUBLISH
//	ARGV[7] wildcard channel, or "" (cluster mode: also PUBLISH there)
var publishScript = goredis.NewScript(ensureEpoch + `
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'm', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local payload = offset .. ' ' .. epoch .. ' ' .. ARGV[5]
redis.call(ARGV[6], KEYS[3], payload)
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7], payload)
end
return {offset, epoch}
`)

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
