package redis

import (
	"context"
	"errors"
	"strings"
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

// track is what this node last delivered on a topic.
type track struct {
	// mu guards every field; it is held while delivering the topic.
	mu    sync.Mutex
	last  uint64
	epoch string
	used  time.Time
	// repairing is set while a repair goroutine reads history for the
	// topic; relayed messages wait in held meanwhile, at most maxHeld.
	repairing bool
	held      []*broker.Message
	// dropped is the highest offset of the topic's epoch that did not fit
	// in held; the repair reads it from history or announces a gap to it.
	dropped uint64
	// catchUp asks the running repair to read history once more when it
	// is done: the relay resubscribed while it ran.
	catchUp bool
}

// maxHeld bounds the relayed messages one topic holds while its repair
// reads history; what does not fit is read from history afterwards.
const maxHeld = 4096

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
	// Patterns are subscribed on the main connection in both modes.
	r.main = r.startConn(s.client.Subscribe(s.ctx), false)
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
				r.s.log.Warn("redis: pub/sub receive failed", "sharded", c.sharded, "err", err)
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

// Watch subscribes this node to pattern and returns once the subscription
// is confirmed and, for an exact topic, delivery tracking starts at the
// topic's current position.
func (s *Store) Watch(ctx context.Context, pattern string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	r := s.relay
	r.mu.Lock()
	if w := r.watches[pattern]; w != nil {
		w.count++
		ready := w.ready
		r.mu.Unlock()
		select {
		case <-ready:
			if w.err != nil {
				s.Unwatch(pattern)
			}
			return w.err
		case <-ctx.Done():
			s.Unwatch(pattern)
			return ctx.Err()
		}
	}
	w := &watch{count: 1, subscribed: make(chan struct{}), ready: make(chan struct{})}
	w.wildcard = strings.ContainsAny(pattern, "*>")
	r.watches[pattern] = w
	r.mu.Unlock()

	err := r.subscribe(ctx, pattern, w)
	if err == nil {
		select {
		case <-w.subscribed:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil && !w.wildcard {
		var pos broker.Position
		if pos, err = s.Position(ctx, pattern); err == nil {
			r.mu.Lock()
			alone := w.count == 1 && !r.wildcardWatches(pattern)
			r.mu.Unlock()
			r.startTrack(pattern, pos, alone)
		}
	}
	if err == nil && w.wildcard && s.cluster != nil {
		err = s.announceWildcards(ctx)
	}
	w.err = err
	close(w.ready)
	if err != nil {
		s.Unwatch(pattern)
	}
	return err
}

// subscribe sends the subscription for a new watch.
func (r *relay) subscribe(ctx context.Context, pattern string, w *watch) error {
	s := r.s
	name, c := s.keys(pattern)[2], r.main
	switch {
	case w.wildcard:
		name = s.glob(pattern)
	case s.cluster != nil:
		var err error
		if c, err = r.shardConn(ctx, name); err != nil {
			return err
		}
	}
	r.mu.Lock()
	w.name, w.conn = name, c
	r.names[name] = pattern
	r.mu.Unlock()
	r.wireMu.Lock()
	defer r.wireMu.Unlock()
	return subscribeOn(ctx, c, w.wildcard, name)
}

func subscribeOn(ctx context.Context, c *conn, wildcard bool, name string) error {
	switch {
	case wildcard:
		return c.ps.PSubscribe(ctx, name)
	case c.sharded:
		return c.ps.SSubscribe(ctx, name)
	default:
		return c.ps.Subscribe(ctx, name)
	}
}

// shardConn returns the sharded subscription connection of the master
// that owns channel's slot, starting it if needed.
func (r *relay) shardConn(ctx context.Context, channel string) (*conn, error) {
	node, err := r.s.cluster.MasterForKey(ctx, channel)
	if err != nil {
		return nil, err
	}
	addr := node.Options().Addr
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	c := r.shards[addr]
	if c == nil {
		c = r.startConn(node.SSubscribe(r.s.ctx), true)
		r.shards[addr] = c
	}
	return c, nil
}

// Unwatch drops one Watch of pattern. The last one stops tracking the
// topic and leaves the unsubscription to the unsubscriber: Unwatch never
// waits on Redis.
func (s *Store) Unwatch(pattern string) {
	r := s.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.watches[pattern]
	if w == nil {
		return
	}
	w.count--
	if w.count > 0 {
		return
	}
	delete(r.watches, pattern)
	if w.name != "" {
		delete(r.names, w.name)
	}
	// The topic's track stays: a repair may still be running on it, and
	// wildcard subscriptions that match the topic rely on it to order
	// their deliveries and announce gaps and new epochs. A second track
	// for the topic would deliver its messages twice. The sweeper drops
	// it once nothing uses it.
	if w.conn == nil || r.closed {
		return
	}
	r.unsubs = append(r.unsubs, unsub{name: w.name, wildcard: w.wildcard, conn: w.conn})
	select {
	case r.unsubWake <- struct{}{}:
	default:
	}
}

// wildcardWatches reports whether a wildcard watch matches topic. The
// caller holds mu.
func (r *relay) wildcardWatches(topic string) bool {
	for p, w := range r.watches {
		if w.wildcard && broker.Match(p, topic) {
			return true
		}
	}
	return false
}

// unsubscriber sends the unsubscriptions Unwatch left, in order, until the
// store closes. A channel that a newer watch uses again is kept.
func (r *relay) unsubscriber() {
	defer r.wg.Done()
	for {
		select {
		case <-r.s.ctx.Done():
			return
		case <-r.unsubWake:
		}
		for {
			r.mu.Lock()
			if len(r.unsubs) == 0 || r.closed {
				r.unsubs = nil
				r.mu.Unlock()
				break
			}
			u := r.unsubs[0]
			r.unsubs = r.unsubs[1:]
			r.mu.Unlock()
			r.sendUnsubscribe(u)
		}
	}
}

// sendUnsubscribe unsubscribes u unless a watch has taken its name again
// meanwhile. wireMu keeps a newer watch's subscription after it.
func (r *relay) sendUnsubscribe(u unsub) {
	r.wireMu.Lock()
	defer r.wireMu.Unlock()
	r.mu.Lock()
	_, again := r.names[u.name]
	r.mu.Unlock()
	if again {
		return
	}
	ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.Timeout)
	defer cancel()
	switch {
	case u.wildcard:
		_ = u.conn.ps.PUnsubscribe(ctx, u.name)
	case u.conn.sharded:
		_ = u.conn.ps.SUnsubscribe(ctx, u.name)
	default:
		_ = u.conn.ps.Unsubscribe(ctx, u.name)
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
			r.s.log.Warn("redis: cannot subscribe again", "channel", s.name, "err", err)
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
		r.s.log.Warn("redis: cannot follow a moved channel", "channel", channel, "err", err)
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
		r.s.log.Warn("redis: cannot follow a moved channel", "channel", channel, "err", err)
		return
	}
	r.repairPattern(pattern, false)
}

// onMessage delivers a relayed message in offset order.
func (r *relay) onMessage(m *goredis.Message) {
	msg, err := decodePayload(m.Payload)
	if err != nil {
		r.s.log.Warn("redis: dropping a malformed relayed message", "channel", m.Channel)
		return
	}
	r.process(msg)
}

// trackOf returns the topic's tracking state, creating it empty.
func (r *relay) trackOf(topic string) *track {
	r.trackMu.Lock()
	defer r.trackMu.Unlock()
	t := r.tracks[topic]
	if t == nil {
		t = &track{}
		r.tracks[topic] = t
	}
	return t
}

// startTrack starts tracking topic at pos unless it is already tracked.
// A track that nothing else uses (alone: no other watch of the topic, no
// matching wildcard watch) and no repair runs on is moved to pos: what it
// missed while unwatched concerns no one.
func (r *relay) startTrack(topic string, pos broker.Position, alone bool) {
	t := r.trackOf(topic)
	t.mu.Lock()
	if t.epoch == "" || alone && !t.repairing {
		t.last, t.epoch = pos.Offset, pos.Epoch
	}
	t.used = time.Now()
	t.mu.Unlock()
}

// process delivers m unless it was delivered already; a new epoch is
// announced with a history_lost reset, and a skipped offset starts a
// repair from history, which m and the topic's later messages wait for.
func (r *relay) process(m *broker.Message) {
	sink := r.deliverer()
	if sink == nil {
		return
	}
	t := r.trackOf(m.Topic)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.used = time.Now()
	if t.repairing {
		t.hold(m)
		return
	}
	if gap := step(sink, t, m); gap {
		t.repairing = true
		t.hold(m)
		r.startRepair(m.Topic, t, m.Offset-1)
	}
}

// hold keeps m until the running repair is done, or notes that it must
// be read from history. The caller holds t.mu.
func (t *track) hold(m *broker.Message) {
	if len(t.held) < maxHeld {
		t.held = append(t.held, m)
		return
	}
	if m.Epoch == t.epoch || t.epoch == "" {
		t.dropped = max(t.dropped, m.Offset)
	}
}

// step delivers m if it is the topic's next message, drops it if it was
// delivered already, and reports a gap before it otherwise. A message of
// a new epoch is announced with a history_lost reset first. The caller
// holds t.mu.
func step(sink broker.Deliverer, t *track, m *broker.Message) (gap bool) {
	switch {
	case t.epoch == "":
		t.epoch, t.last = m.Epoch, m.Offset-1
	case m.Epoch != t.epoch:
		sink.Reset(m.Topic, broker.Position{Offset: 0, Epoch: m.Epoch}, broker.ResetHistoryLost)
		t.epoch, t.last = m.Epoch, 0
	}
	if m.Offset <= t.last {
		return false
	}
	if m.Offset > t.last+1 {
		return true
	}
	sink.Deliver(m)
	t.last = m.Offset
	return false
}

// startRepair starts the repair goroutine of topic. upTo is the last
// offset a gap skipped (0 when catching up after a reconnect). The caller
// holds t.mu and has set t.repairing.
func (r *relay) startRepair(topic string, t *track, upTo uint64) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.repair(topic, t, upTo)
	}()
}

// repair reads the topic's history after what this node delivered, then
// delivers it and the messages held meanwhile, in order, each once; what
// history no longer holds is announced with a gap reset. It goes on
// until nothing is held and no catch-up is asked for, then clears
// t.repairing. It holds t.mu only while delivering, never across Redis.
func (r *relay) repair(topic string, t *track, upTo uint64) {
	for {
		t.mu.Lock()
		from := broker.Position{Offset: t.last, Epoch: t.epoch}
		t.mu.Unlock()
		msgs, pos, ok, err := r.readHistory(topic, from)

		t.mu.Lock()
		sink := r.deliverer()
		if sink == nil || r.s.ctx.Err() != nil {
			t.held, t.repairing = nil, false
			t.mu.Unlock()
			return
		}
		if err == nil && pos.Epoch != t.epoch {
			// The topic's epoch moved on while this node was away: read
			// the new epoch from its start.
			// Held messages of the old epoch came before it ended.
			sink.Reset(topic, broker.Position{Offset: 0, Epoch: pos.Epoch}, broker.ResetHistoryLost)
			t.epoch, t.last, upTo, t.dropped = pos.Epoch, 0, 0, 0
			kept := t.held[:0]
			for _, m := range t.held {
				if m.Epoch == pos.Epoch {
					kept = append(kept, m)
				}
			}
			clear(t.held[len(kept):])
			t.held = kept
			t.mu.Unlock()
			continue
		}
		r.fill(sink, t, topic, upTo, msgs, pos, ok, err)
		upTo = 0
		for len(t.held) > 0 {
			m := t.held[0]
			if step(sink, t, m) {
				upTo = m.Offset - 1
				break
			}
			t.held[0] = nil
			t.held = t.held[1:]
		}
		switch {
		case upTo > 0:
		case t.dropped > t.last || t.catchUp:
			upTo, t.dropped, t.catchUp = max(t.dropped, t.last), 0, false
		default:
			t.held, t.repairing = nil, false
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
}

// readHistory reads the topic's history after from, trying again a few
// times with a short backoff while Redis does not answer.
func (r *relay) readHistory(topic string, from broker.Position) ([]*broker.Message, broker.Position, bool, error) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		msgs, pos, ok, err := r.s.Since(r.s.ctx, topic, from)
		if err == nil || attempt == 3 || r.s.ctx.Err() != nil {
			return msgs, pos, ok, err
		}
		select {
		case <-r.s.ctx.Done():
		case <-time.After(backoff):
		}
		backoff *= 4
	}
}

// fill delivers what history holds after t.last, or announces a gap: up
// to upTo, the offset before the message that showed the gap, or, when
// catching up (upTo 0), up to the topic's current offset. The caller
// holds t.mu.
func (r *relay) fill(sink broker.Deliverer, t *track, topic string, upTo uint64, msgs []*broker.Message, pos broker.Position, ok bool, err error) {
	recovered := false
	if err == nil && ok {
		for _, m := range msgs {
			if m.Offset > t.last {
				sink.Deliver(m)
				t.last = m.Offset
				recovered = true
			}
		}
	}
	target := upTo
	if err == nil && !ok {
		target = max(upTo, pos.Offset)
	}
	if t.last < target {
		sink.Reset(topic, broker.Position{Offset: target, Epoch: t.epoch}, broker.ResetGap)
		t.last = target
		r.s.tel.repairs.Add(r.s.ctx, 1, r.s.tel.gapReset)
	} else if recovered {
		r.s.tel.repairs.Add(r.s.ctx, 1, r.s.tel.repaired)
	}
}

// repairPattern catches up every tracked topic of pattern after a
// resubscription: what was published while the node was away is
// delivered from history, or announced. The reading is done by each
// topic's repair goroutine.
func (r *relay) repairPattern(pattern string, wildcard bool) {
	var topics []string
	r.trackMu.Lock()
	for topic := range r.tracks {
		if topic == pattern || wildcard && broker.Match(pattern, topic) {
			topics = append(topics, topic)
		}
	}
	r.trackMu.Unlock()
	for _, topic := range topics {
		t := r.trackOf(topic)
		t.mu.Lock()
		switch {
		case t.epoch == "":
		case t.repairing:
			t.catchUp = true
		default:
			t.repairing = true
			r.startRepair(topic, t, 0)
		}
		t.mu.Unlock()
	}
}

// sweepTracks forgets the tracks nothing uses: no watch of the topic and
// no matching wildcard watch, or only wildcard watches and idle for
// longer than the history TTL. A track under repair is kept.
func (r *relay) sweepTracks() {
	cutoff := time.Now().Add(-r.s.cfg.HistoryTTL)
	r.mu.Lock()
	exact := make(map[string]bool, len(r.watches))
	var wildcards []string
	for p, w := range r.watches {
		if w.wildcard {
			wildcards = append(wildcards, p)
		} else {
			exact[p] = true
		}
	}
	r.mu.Unlock()
	r.trackMu.Lock()
	defer r.trackMu.Unlock()
	for topic, t := range r.tracks {
		if exact[topic] || !t.mu.TryLock() {
			continue
		}
		matched := false
		for _, p := range wildcards {
			if broker.Match(p, topic) {
				matched = true
				break
			}
		}
		if !t.repairing && (!matched || t.used.Before(cutoff)) {
			delete(r.tracks, topic)
		}
		t.mu.Unlock()
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
