package redis

import (
	"context"
	"strings"

	"github.com/tidings-io/tidings/broker"
)

// Watch subscribes this node to pattern and returns once the subscription
// is confirmed and, for an exact topic, delivery tracking starts at the
// topic's current position.
func (s *Store) Watch(ctx context.Context, pattern string) error {
	return s.red.err(s.watch(ctx, pattern))
}

// watch is Watch, its error not yet redacted.
func (s *Store) watch(ctx context.Context, pattern string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	// The Redis work is bounded by Timeout; the wait of a first wildcard
	// watch on a cluster (announceWildcards) is not Redis work, and only
	// the caller's ctx bounds it.
	caller := ctx
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
		err = s.announceWildcards(caller)
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
