package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/control"
)

// A topic's presence lives in three keys that share the topic's hash tag,
// so that on a cluster one script reaches them all:
//
//	KEYS[1]  <prefix>{<topic>}:presence        hash: session → entry JSON (presenceValue)
//	KEYS[2]  <prefix>{<topic>}:presence:exp    sorted set: session → expiry (Unix ms)
//	KEYS[3]  <prefix>{<topic>}:presence:users  hash: user → live sessions of that (non-empty) user
//
// Every presence script first deletes the entries whose expiry has passed
// on Redis's clock (TIME, the same for every node) and takes them off
// their users' counts, so counting is ZCARD and HLEN. A user is read from
// the entry's JSON (cjson), for additions and removals alike, so the
// counts always agree with the entries. The keys expire controlLinger
// after their latest entry, so an abandoned topic's presence vanishes.

// presenceHead, at the head of every presence script, deletes the expired
// entries.
const presenceHead = scriptNow + `
local function userOf(v)
  local ok, e = pcall(cjson.decode, v)
  if ok and type(e) == 'table' and type(e.user) == 'string' then
    return e.user
  end
  return ''
end
local function addUser(u)
  if u ~= '' then
    redis.call('HINCRBY', KEYS[3], u, 1)
  end
end
local function dropUser(u)
  if u ~= '' and redis.call('HINCRBY', KEYS[3], u, -1) <= 0 then
    redis.call('HDEL', KEYS[3], u)
  end
end
local function forget(s)
  local v = redis.call('HGET', KEYS[1], s)
  if v then
    redis.call('HDEL', KEYS[1], s)
    dropUser(userOf(v))
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  for _, s in ipairs(expired) do
    forget(s)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end
`

// presenceUpdateScript applies one topic's part of a presence update:
// the additions, then the removals. Adding a live entry again sets its
// expiry to now + TTL (and its JSON, moving it to another user's count if
// that changed); adding a new one counts it for its user; removing an
// entry takes it off its user's count, and an absent one is ignored.
//
//	ARGV[1] TTL (ms)   ARGV[2] linger (ms)   ARGV[3] number of additions n
//	then two per addition: session, entry JSON
//	then one per removal: session
var presenceUpdateScript = goredis.NewScript(presenceHead + `
local expires = string.format('%d', now + tonumber(ARGV[1]))
local n = tonumber(ARGV[3])
for i = 4, 3 + 2*n, 2 do
  local s, v = ARGV[i], ARGV[i+1]
  if redis.call('ZADD', KEYS[2], expires, s) == 1 then
    redis.call('HSET', KEYS[1], s, v)
    addUser(userOf(v))
  else
    local old = redis.call('HGET', KEYS[1], s)
    if old ~= v then
      redis.call('HSET', KEYS[1], s, v)
      local was, is = old and userOf(old), userOf(v)
      if was ~= is then
        if was then
          dropUser(was)
        end
        addUser(is)
      end
    end
  end
end
for i = 4 + 2*n, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  forget(ARGV[i])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
elseif n > 0 then
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local at = string.format('%d', tonumber(last[2]) + tonumber(ARGV[2]))
  for k = 1, 3 do
    redis.call('PEXPIREAT', KEYS[k], at)
  end
end
return 1
`)

// presenceListScript returns the topic's live entries: session, JSON
// pairs.
var presenceListScript = goredis.NewScript(presenceHead + `
return redis.call('HGETALL', KEYS[1])
`)

// presenceStatsScript returns the topic's live entries and users: {ZCARD,
// HLEN}.
var presenceStatsScript = goredis.NewScript(presenceHead + `
return {redis.call('ZCARD', KEYS[2]), redis.call('HLEN', KEYS[3])}
`)

// presenceKeys returns the three presence keys of topic.
func (s *Store) presenceKeys(topic string) []string {
	tag := s.cfg.Prefix + "{" + topic + "}:presence"
	return []string{tag, tag + ":exp", tag + ":users"}
}

// presenceValue is an entry as the presence hash keeps it: its topic is
// in the key's name and its session is the field.
type presenceValue struct {
	User string          `json:"user"`
	Info json.RawMessage `json:"info,omitempty"`
	Node string          `json:"node"`
}

// UpdatePresence applies u with one script run per topic, every run in
// one pipeline: one round trip on a single Redis, one per master (at
// once) on a cluster. Within a topic the additions are applied before
// the removals. When some topics fail, the others are applied and the
// error says how many failed.
func (s *Store) UpdatePresence(ctx context.Context, u control.PresenceUpdate) error {
	if err := s.controlReady(ctx); err != nil {
		return err
	}
	if len(u.Add) > 0 && ms(u.TTL) <= 0 {
		return errPresenceTTL
	}
	keys, args, err := s.presenceArgs(u)
	if err != nil || len(keys) == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.red.err(s.runPresenceUpdate(ctx, keys, args))
}

// presenceArgs splits u by topic, in the order topics first appear: the
// keys and arguments of each topic's run of presenceUpdateScript.
func (s *Store) presenceArgs(u control.PresenceUpdate) (keys [][]string, args [][]any, err error) {
	index := make(map[string]int)
	var adds, sizes []int // per topic: additions, arguments
	topicOf := func(topic string, n int) int {
		g, ok := index[topic]
		if !ok {
			g = len(keys)
			index[topic] = g
			keys = append(keys, s.presenceKeys(topic))
			adds, sizes = append(adds, 0), append(sizes, 3)
		}
		sizes[g] += n
		return g
	}
	groupOf := make([]int, len(u.Add)+len(u.Remove))
	for i, e := range u.Add {
		groupOf[i] = topicOf(e.Topic, 2)
		adds[groupOf[i]]++
	}
	for i, k := range u.Remove {
		groupOf[len(u.Add)+i] = topicOf(k.Topic, 1)
	}
	// Every entry's JSON goes in one buffer: one allocation, not one each.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	ends := make([]int, len(u.Add))
	var v presenceValue
	for i, e := range u.Add {
		v = presenceValue{User: e.User, Info: e.Info, Node: e.Node}
		if err := enc.Encode(&v); err != nil {
			return nil, nil, fmt.Errorf("redis: encoding presence entry %d: %w", i, err)
		}
		ends[i] = buf.Len() - 1 // without Encode's newline
	}
	body := buf.Bytes()
	args = make([][]any, len(keys))
	for g := range args {
		args[g] = append(make([]any, 0, sizes[g]), ms(u.TTL), ms(controlLinger), adds[g])
	}
	from := 0
	for i, e := range u.Add {
		g := groupOf[i]
		args[g] = append(args[g], e.Session, body[from:ends[i]:ends[i]])
		from = ends[i] + 1
	}
	for i, k := range u.Remove {
		g := groupOf[len(u.Add)+i]
		args[g] = append(args[g], k.Session)
	}
	return keys, args, nil
}

// runPresenceUpdate runs the update script of every topic in a pipeline
// (see pipelined: the runs Redis answered NOSCRIPT run again with the
// script's text).
func (s *Store) runPresenceUpdate(ctx context.Context, keys [][]string, args [][]any) error {
	runs := make([]*scriptRun, len(keys))
	for i := range keys {
		runs[i] = &scriptRun{keys: keys[i], args: args[i]}
	}
	pipelined(ctx, s.client, presenceUpdateScript, runs)
	errs := make([]error, len(runs))
	for i, r := range runs {
		errs[i] = r.err
	}
	failed, first := failures(errs)
	switch {
	case failed == 0:
		return nil
	case failed < len(runs):
		return fmt.Errorf("redis: updating presence: %d of %d topics failed: %w", failed, len(runs), first)
	default:
		return fmt.Errorf("redis: updating presence: %w", first)
	}
}

// Presence lists topic's live entries.
func (s *Store) Presence(ctx context.Context, topic string) ([]control.PresenceEntry, error) {
	return controlPairs(ctx, s, "reading presence", presenceListScript, s.presenceKeys(topic), nil,
		func(session, value string) (control.PresenceEntry, bool) {
			var v presenceValue
			err := json.Unmarshal([]byte(value), &v)
			return control.PresenceEntry{Topic: topic, Session: session, User: v.User, Info: v.Info, Node: v.Node}, err == nil
		})
}

// PresenceStats counts topic's live entries and their distinct non-empty
// users: one script run that deletes the entries expired since the last
// call, then reads two counters.
func (s *Store) PresenceStats(ctx context.Context, topic string) (control.PresenceStats, error) {
	cmd, err := s.runControl(ctx, "counting presence", presenceStatsScript, s.presenceKeys(topic))
	if err != nil {
		return control.PresenceStats{}, err
	}
	res, err := cmd.Int64Slice()
	if err != nil || len(res) != 2 {
		return control.PresenceStats{}, errControlRecord
	}
	return control.PresenceStats{Sessions: int(res[0]), Users: int(res[1])}, nil
}
