package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/control"
)

// The Redis store is also the control.Backend that nodes share:
//
//   - broadcasts go out with a classic PUBLISH on <prefix>control, which a
//     cluster carries to every node; the relay's main pub/sub connection
//     subscribes to it (go-redis subscribes again after a reconnect) and
//     hands what it receives, in order, to the OnBroadcast handler on a
//     goroutine of its own, so that the handler may call the store;
//   - presence lives in three keys per topic, in the topic's slot
//     (presence.go);
//   - revocations in the hash <prefix>revoked, field "user:<U>" or
//     "jti:<J>", value the Until in Unix milliseconds;
//   - announcements in the hash <prefix>nodes, field the node id, value
//     {"expires":<Unix ms>,"node":<NodeInfo JSON>}.
//
// Expiry is decided by scripts on Redis's clock (TIME), the same for every
// node, and records found expired are deleted by the script that finds
// them, atomically, so a reader never deletes a record renewed meanwhile.

var _ control.Backend = (*Store)(nil)

// Errors of the control plane's arguments: defects of the caller.
var (
	errPresenceTTL = errors.New("redis: presence update adds entries with no positive TTL")
	errAnnounceTTL = errors.New("redis: announcement with no positive TTL")
	errRevocation  = errors.New("redis: a revocation names exactly one of a user and a token id")
)

// errControlRecord reports a presence entry, revocation or announcement
// read from Redis that this node cannot read.
var errControlRecord = errors.New("redis: malformed control record")

// controlLinger is how much longer than the records they hold the control
// keys live (presence, revocations, nodes), so that keys nobody renews
// vanish a little after their last record expired.
const controlLinger = time.Second

// maxControlQueue bounds the broadcasts received and not yet handed to the
// handler; beyond it they are dropped (delivery is best effort) rather
// than held without limit for a handler that does not keep up.
const maxControlQueue = 1 << 16

// controlChannel is the classic pub/sub channel of broadcasts.
func (s *Store) controlChannel() string { return s.cfg.Prefix + "control" }

// revokedKey is the hash of revocations.
func (s *Store) revokedKey() string { return s.cfg.Prefix + "revoked" }

// nodesKey is the hash of node announcements.
func (s *Store) nodesKey() string { return s.cfg.Prefix + "nodes" }

// controlBus hands broadcasts from the relay's receive loop to the
// handler: one goroutine at a time delivers the queue, in order, so the
// receive loop never waits on the handler.
type controlBus struct {
	mu       sync.Mutex
	handler  func(msg []byte)
	queue    [][]byte
	draining bool // a drainControl goroutine runs
	dropped  bool // the last message was dropped on a full queue
}

// isControl reports whether channel is the control channel (without
// allocating: it is asked of every relayed message).
func (r *relay) isControl(channel string) bool {
	p := r.s.cfg.Prefix
	return len(channel) == len(p)+len("control") && channel[:len(p)] == p && channel[len(p):] == "control"
}

// onControl queues a broadcast for the handler, and starts a goroutine to
// deliver the queue unless one runs. Only receive loops call it.
func (r *relay) onControl(payload string) {
	b := &r.control
	b.mu.Lock()
	if b.handler == nil {
		b.mu.Unlock()
		return
	}
	if len(b.queue) >= maxControlQueue {
		warn := !b.dropped
		b.dropped = true
		b.mu.Unlock()
		if warn {
			r.s.log.Warn("redis: dropping broadcasts: the handler does not keep up", "queued", maxControlQueue)
		}
		return
	}
	b.dropped = false
	b.queue = append(b.queue, []byte(payload))
	if b.draining {
		b.mu.Unlock()
		return
	}
	b.draining = true
	// The receive loop calling is counted in wg: Add cannot race Wait.
	r.wg.Add(1)
	b.mu.Unlock()
	go r.drainControl()
}

// drainControl hands the queued broadcasts to the handler until the queue
// is empty or the store closes.
func (r *relay) drainControl() {
	defer r.wg.Done()
	b := &r.control
	for {
		b.mu.Lock()
		if len(b.queue) == 0 || r.s.ctx.Err() != nil {
			b.queue, b.draining = nil, false
			b.mu.Unlock()
			return
		}
		msg, handler := b.queue[0], b.handler
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.mu.Unlock()
		handler(msg)
	}
}

// OnBroadcast sets the function that receives every broadcast message, in
// the order Redis relays them, never two calls at once. It runs on a
// goroutine of its own: it may call the store. Close waits for a call in
// progress; the messages still queued then are dropped.
func (s *Store) OnBroadcast(handler func(msg []byte)) {
	b := &s.relay.control
	b.mu.Lock()
	b.handler = handler
	b.mu.Unlock()
}

// Broadcast publishes msg on the control channel. On a cluster it always
// goes through the master that owns the channel's slot, so that one
// node's broadcasts reach every node in the order sent.
func (s *Store) Broadcast(ctx context.Context, msg []byte) error {
	if err := s.controlReady(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	channel := s.controlChannel()
	var err error
	if s.cluster != nil {
		var node *goredis.Client
		if node, err = s.cluster.MasterForKey(ctx, channel); err == nil {
			err = node.Publish(ctx, channel, msg).Err()
		}
	} else {
		err = s.client.Publish(ctx, channel, msg).Err()
	}
	if err != nil {
		return s.red.err(fmt.Errorf("redis: broadcasting: %w", err))
	}
	return nil
}

// controlReady returns ErrClosed once the store is closed, or ctx's error.
func (s *Store) controlReady(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// Redis's clock in milliseconds, at the head of the control scripts.
const scriptNow = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`

// scriptKeepUntil defines keep_until(key, at): the key lives at least
// until at (Unix ms), never less than it would already.
const scriptKeepUntil = `
local function keep_until(key, at)
  local cur = redis.call('PEXPIRETIME', key)
  if cur == -1 or cur < at then
    redis.call('PEXPIREAT', key, string.format('%d', at))
  end
end
`

// revokeScript records a revocation, keeping the later Until of the one
// recorded already, and keeps the hash until the last Until (and
// controlLinger) has passed.
//
//	KEYS[1] <prefix>revoked
//	ARGV[1] field ("user:<U>" or "jti:<J>")   ARGV[2] until (Unix ms)
//	ARGV[3] linger (ms)
var revokeScript = goredis.NewScript(scriptKeepUntil + `
local upto = tonumber(ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if old and old >= upto then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local keep = upto + tonumber(ARGV[3])
keep_until(KEYS[1], keep)
return 1
`)

// liveScript returns the records of a hash of expiring records whose
// expiry is ahead, as field, value pairs, and deletes the others. A
// record's expiry is the number (tonumber) that the first capture of a
// Lua pattern finds in its value; a value it finds none in is expired.
//
//	KEYS[1] the hash (<prefix>revoked, <prefix>nodes)
//	ARGV[1] the pattern (revocationExpiry, announcementExpiry)
var liveScript = goredis.NewScript(scriptNow + `
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i+1], ARGV[1]))
  if expires and expires > now then
    out[#out+1] = all[i]
    out[#out+1] = all[i+1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
`)

// The liveScript patterns of the expiry in the values of the revocations
// hash (the whole value: the Until in Unix ms) and of the nodes hash
// (announcement.Expires, the JSON's first member, as announceScript
// writes it).
const (
	revocationExpiry   = `^(.*)$`
	announcementExpiry = `^{"expires":(%d+),`
)

// announceScript records a node's announcement until now + ttl, and keeps
// the hash as long as the latest announcement (and controlLinger).
//
//	KEYS[1] <prefix>nodes
//	ARGV[1] node id   ARGV[2] ttl (ms)   ARGV[3] NodeInfo JSON
//	ARGV[4] linger (ms)
var announceScript = goredis.NewScript(scriptNow + scriptKeepUntil + `
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], '{"expires":' .. string.format('%d', expires) .. ',"node":' .. ARGV[3] .. '}')
local keep = expires + tonumber(ARGV[4])
keep_until(KEYS[1], keep)
return 1
`)

// Revoke records r until r.Until; when the user or token is revoked
// already, the later Until is kept.
func (s *Store) Revoke(ctx context.Context, r control.Revocation) error {
	field := r.Key()
	if field == "" {
		return errRevocation
	}
	_, err := s.runControl(ctx, "revoking", revokeScript, []string{s.revokedKey()}, field, r.Until.UnixMilli(), ms(controlLinger))
	return err
}

// runControl runs script on keys with args within the store's timeout;
// what names the call in its error.
func (s *Store) runControl(ctx context.Context, what string, script *goredis.Script, keys []string, args ...any) (*goredis.Cmd, error) {
	if err := s.controlReady(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	cmd := script.Run(ctx, s.client, keys, args...)
	if err := cmd.Err(); err != nil {
		return nil, s.red.err(fmt.Errorf("redis: %s: %w", what, err))
	}
	return cmd, nil
}

// controlPairs runs script on keys with args, as runControl does, and
// decodes each field, value pair of its answer with decode; an answer
// that is not a list of strings, or a pair decode rejects, is
// errControlRecord.
func controlPairs[T any](ctx context.Context, s *Store, what string, script *goredis.Script, keys []string, args []any, decode func(field, value string) (T, bool)) ([]T, error) {
	cmd, err := s.runControl(ctx, what, script, keys, args...)
	if err != nil {
		return nil, err
	}
	res, err := cmd.StringSlice()
	if err != nil {
		return nil, errControlRecord
	}
	out := make([]T, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		v, ok := decode(res[i], res[i+1])
		if !ok {
			return nil, errControlRecord
		}
		out = append(out, v)
	}
	return out, nil
}

// Revocations lists the revocations whose Until is ahead on Redis's
// clock, and deletes the others.
func (s *Store) Revocations(ctx context.Context) ([]control.Revocation, error) {
	return controlPairs(ctx, s, "reading revocations", liveScript, []string{s.revokedKey()}, []any{revocationExpiry},
		func(field, value string) (control.Revocation, bool) {
			until, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return control.Revocation{}, false
			}
			return control.RevocationOf(field, time.UnixMilli(until))
		})
}

// announcement is the value of a node's field in the nodes hash.
type announcement struct {
	Expires int64            `json:"expires"`
	Node    control.NodeInfo `json:"node"`
}

// Announce records n as live for ttl from now on Redis's clock;
// announcing again extends it.
func (s *Store) Announce(ctx context.Context, n control.NodeInfo, ttl time.Duration) error {
	if ms(ttl) <= 0 {
		return errAnnounceTTL
	}
	info, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("redis: encoding the announcement: %w", err)
	}
	_, err = s.runControl(ctx, "announcing", announceScript, []string{s.nodesKey()}, n.ID, ms(ttl), info, ms(controlLinger))
	return err
}

// Nodes lists the nodes whose last announcement has not expired on
// Redis's clock, and deletes the others.
func (s *Store) Nodes(ctx context.Context) ([]control.NodeInfo, error) {
	return controlPairs(ctx, s, "reading nodes", liveScript, []string{s.nodesKey()}, []any{announcementExpiry},
		func(_, value string) (control.NodeInfo, bool) {
			var a announcement
			err := json.Unmarshal([]byte(value), &a)
			return a.Node, err == nil
		})
}
