package redis

import (
	"sync"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// A node's delivery state per topic: what it last delivered, in which
// epoch, and the repairs that fill gaps from history.

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

// trackOf returns the topic's tracking state, creating it empty.
func (r *relay) trackOf(topic string) *track {
	return getOrAdd(&r.trackMu, r.tracks, topic)
}

// getOrAdd returns m's value at k, adding a zero one when there is none;
// mu guards m.
func getOrAdd[K comparable, V any](mu *sync.Mutex, m map[K]*V, k K) *V {
	mu.Lock()
	defer mu.Unlock()
	v := m[k]
	if v == nil {
		v = new(V)
		m[k] = v
	}
	return v
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
// longer than its history TTL. A track under repair is kept.
func (r *relay) sweepTracks() {
	now := time.Now()
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
		_, ttl := r.s.history(topic)
		if !t.repairing && (!matched || t.used.Before(now.Add(-ttl))) {
			delete(r.tracks, topic)
		}
		t.mu.Unlock()
	}
}
