package redis

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/broker"
)

// relay carries messages from Redis pub/sub to this node's Deliverer. It
// subscribes to a topic's channel (or a pattern) while the broker watches
// it, tracks the last offset delivered per topic, repairs gaps from
// history, and resubscribes and repairs after Redis comes back.
//
// No receive loop waits on Redis for anything but its next message: gap
// repairs read history on a goroutine of their own while the topic's
// later messages wait for them, and unsubscribing is left to the
// unsubscriber goroutine, so that a broker's Unwatch (called from session
// writers) never waits on the network.
type relay struct {
	s *Store

	// mu guards sink, watches, names, main, shards, closed and unsubs; a
	// topic's track leaves tracks under mu too (lock order: mu, then
	// trackMu).
	mu      sync.Mutex
	sink    broker.Deliverer
	watches map[string]*watch // by pattern (exact topic or wildcard)
	names   map[string]string // channel or glob → pattern
	main    *conn             // single Redis: everything; cluster: wildcard globs
	shards  map[string]*conn  // cluster: sharded subscriptions by node address
	closed  bool
	unsubs  []unsub // unsubscriptions the unsubscriber has yet to send

	// wireMu orders the subscriptions and unsubscriptions sent to Redis,
	// so that an unsubscription sent late never undoes a newer Watch.
	wireMu sync.Mutex
	// unsubWake tells the unsubscriber that unsubs has work (capacity 1).
	unsubWake chan struct{}

	// trackMu guards tracks.
	trackMu sync.Mutex
	tracks  map[string]*track
	wg      sync.WaitGroup

	// control hands the control channel's messages, received on main, to
	// the OnBroadcast handler (control.go).
	control controlBus
}

// unsub is a channel or glob that no watch needs any more.
type unsub struct {
	name     string
	wildcard bool
	conn     *conn
}

// watch is one pattern's subscription, counted by the broker's Watch calls.
type watch struct {
	count    int
	wildcard bool
	name     string // channel or glob
	conn     *conn
	// confirmed is set, and subscribed closed, by the first confirmation.
	confirmed  bool
	subscribed chan struct{}
	// ready is closed once the first watcher finished setting up; err
	// then tells whether it succeeded.
	ready chan struct{}
	err   error
}

// conn is one pub/sub connection and its receive loop.
type conn struct {
	ps      *goredis.PubSub
	sharded bool
	// resubscribing is set while resubscribe runs for the connection.
	resubscribing atomic.Bool
}

func newRelay(s *Store) *relay {
	r := &relay{
		s:         s,
		watches:   make(map[string]*watch),
		names:     make(map[string]string),
		shards:    make(map[string]*conn),
		tracks:    make(map[string]*track),
		unsubWake: make(chan struct{}, 1),
	}
	// Patterns, and the control channel, are subscribed on the main
	// connection in both modes.
	r.main = r.startConn(s.client.Subscribe(s.ctx, s.controlChannel()), false)
	r.wg.Add(1)
	go r.unsubscriber()
	return r
}

func (r *relay) listen(d broker.Deliverer) {
	r.mu.Lock()
	r.sink = d
	r.mu.Unlock()
}

func (r *relay) deliverer() broker.Deliverer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sink
}

// startConn runs the receive loop of ps. The caller holds mu or is New.
func (r *relay) startConn(ps *goredis.PubSub, sharded bool) *conn {
	c := &conn{ps: ps, sharded: sharded}
	r.wg.Add(1)
	go r.receive(c)
	return c
}

// receive reads one connection until the store closes. While Redis is
// down it retries with a bounded backoff; go-redis resubscribes on
// reconnect, and each confirmation of an existing watch triggers a repair.
func (r *relay) receive(c *conn) {
	defer r.wg.Done()
	backoff := 50 * time.Millisecond
	failed := false // the last Receive failed: the next success is a reconnect
	for {
		msg, err := c.ps.Receive(r.s.ctx)
		if r.s.ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, goredis.ErrClosed) {
				return
			}
			if !failed {
				r.s.log.Warn("redis: pub/sub receive failed", "sharded", c.sharded, "err", r.s.red.err(err))
			}
			failed = true
			var refused goredis.Error
			if errors.As(err, &refused) && c.resubscribing.CompareAndSwap(false, true) {
				// Redis answered a subscription with an error (say,
				// CLUSTERDOWN while a restarted master rejoins): go-redis
				// counts it as held, but it is not. Subscribe again.
				r.wg.Add(1)
				go func() {
					defer r.wg.Done()
					defer c.resubscribing.Store(false)
					r.resubscribe(c)
				}()
			}
			select {
			case <-r.s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if failed {
			failed = false
			r.s.tel.reconnects.Add(r.s.ctx, 1, r.s.tel.connPubSub)
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			r.onSubscription(c, m)
		case *goredis.Message:
			r.onMessage(m)
		}
	}
}

// onSubscription confirms a new watch, or repairs an existing one that
// was resubscribed after a reconnect.
func (r *relay) onSubscription(c *conn, m *goredis.Subscription) {
	r.mu.Lock()
	pattern := r.names[m.Channel]
	w := r.watches[pattern]
	if w == nil || w.name != m.Channel {
		r.mu.Unlock()
		return
	}
	switch m.Kind {
	case "subscribe", "ssubscribe", "psubscribe":
		first := !w.confirmed
		w.confirmed = true
		r.mu.Unlock()
		if first {
			close(w.subscribed)
			return
		}
		r.repairPattern(pattern, w.wildcard)
	case "sunsubscribe":
		// Not asked for while the watch exists: the slot moved to another
		// master. Follow it.
		r.mu.Unlock()
		if c.sharded {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.reroute(pattern, m.Channel)
			}()
		}
	default:
		r.mu.Unlock()
	}
}

// resubscribe subscribes every watch of c again, after Redis refused a
// subscription on it; each confirmation repairs its pattern. A sharded
// channel is routed again to the master that owns its slot now.
func (r *relay) resubscribe(c *conn) {
	type sub struct {
		pattern, name string
		wildcard      bool
	}
	var subs []sub
	r.mu.Lock()
	for p, w := range r.watches {
		if w.conn == c && w.name != "" {
			subs = append(subs, sub{p, w.name, w.wildcard})
		}
	}
	r.mu.Unlock()
	for _, s := range subs {
		if c.sharded {
			r.reroute(s.pattern, s.name)
			continue
		}
		ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.Timeout)
		r.wireMu.Lock()
		err := subscribeOn(ctx, c, s.wildcard, s.name)
		r.wireMu.Unlock()
		cancel()
		if err != nil {
			r.s.log.Warn("redis: cannot subscribe again", "channel", s.name, "err", r.s.red.err(err))
		}
	}
}

// reroute subscribes channel on the master that now owns its slot, and
// repairs what was missed meanwhile.
func (r *relay) reroute(pattern, channel string) {
	ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.Timeout)
	defer cancel()
	c, err := r.shardConn(ctx, channel)
	if err != nil {
		r.s.log.Warn("redis: cannot follow a moved channel", "channel", channel, "err", r.s.red.err(err))
		return
	}
	r.mu.Lock()
	w := r.watches[pattern]
	if w != nil {
		w.conn = c
	}
	r.mu.Unlock()
	if w == nil {
		return
	}
	r.wireMu.Lock()
	err = c.ps.SSubscribe(ctx, channel)
	r.wireMu.Unlock()
	if err != nil {
		r.s.log.Warn("redis: cannot follow a moved channel", "channel", channel, "err", r.s.red.err(err))
		return
	}
	r.repairPattern(pattern, false)
}

// onMessage delivers the messages of a relayed payload in offset order.
func (r *relay) onMessage(m *goredis.Message) {
	if r.isControl(m.Channel) {
		r.onControl(m.Payload)
		return
	}
	if err := decodeRelayed(m.Payload, r.process); err != nil {
		r.s.log.Warn("redis: dropping a malformed relayed message", "channel", m.Channel)
	}
}

// hasWildcards reports whether this node watches any wildcard pattern.
func (r *relay) hasWildcards() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.watches {
		if w.wildcard {
			return true
		}
	}
	return false
}

// close stops every receive loop.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	conns := []*conn{r.main}
	for _, c := range r.shards {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		_ = c.ps.Close()
	}
	r.wg.Wait()
}
