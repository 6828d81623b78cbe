package memory

import (
	"container/heap"
	"slices"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// messageSize is what a message in history counts against HistoryBytes:
// its data, id, topic and key, and about what its struct and the history
// slot take.
func messageSize(m *broker.Message) int64 {
	n := len(m.Data) + len(m.ID) + len(m.Topic) + len(m.IdempotencyKey) + 160
	for k, v := range m.Trace {
		n += len(k) + len(v) + 32
	}
	return int64(n)
}

// ring holds a topic's newest messages, at most its capacity, oldest first.
type ring struct {
	buf  []*broker.Message
	head int // index of the oldest message
	n    int
}

// push appends m, dropping the oldest message when full, and returns the
// change in the bytes the ring holds.
func (r *ring) push(m *broker.Message, size int) int64 {
	var grown int64
	if r.n == len(r.buf) && len(r.buf) < size {
		// Grow by doubling up to size, so that a topic with few messages
		// holds a small ring.
		buf := make([]*broker.Message, min(size, max(4, 2*len(r.buf))))
		for i := range r.n {
			buf[i] = r.at(i)
		}
		grown = slotSize * int64(len(buf)-len(r.buf))
		r.buf, r.head = buf, 0
	}
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = m
		r.n++
		return grown + messageSize(m)
	}
	dropped := r.buf[r.head]
	r.buf[r.head] = m
	r.head = (r.head + 1) % len(r.buf)
	return grown + messageSize(m) - messageSize(dropped)
}

// fit shrinks the ring to size slots when it has more (its topic's
// history size went down), keeping the newest messages, and returns the
// change in the bytes the ring holds.
func (r *ring) fit(size int) int64 {
	if len(r.buf) <= size {
		return 0
	}
	freed := r.dropOldest(r.n - min(r.n, size))
	buf := make([]*broker.Message, size)
	for i := range r.n {
		buf[i] = r.at(i)
	}
	freed += slotSize * int64(len(r.buf)-size)
	r.buf, r.head = buf, 0
	return -freed
}

// slotSize is what one slot of a ring takes: a pointer.
const slotSize = 8

// recordSize is about what a topic's record takes beside its ring and
// messages: the struct, its epoch and its place in the store's map. It
// counts against HistoryBytes too, so that topics with little or no
// history are bounded as well.
const recordSize = 256

// footprint is what t's ring and record count against HistoryBytes,
// messages apart.
func (t *topic) footprint() int64 { return recordSize + slotSize*int64(len(t.history.buf)) }

// at returns the i-th oldest message.
func (r *ring) at(i int) *broker.Message { return r.buf[(r.head+i)%len(r.buf)] }

// dropOldest forgets the k oldest messages and returns their bytes.
func (r *ring) dropOldest(k int) int64 {
	var freed int64
	for ; k > 0 && r.n > 0; k-- {
		freed += messageSize(r.buf[r.head])
		r.buf[r.head] = nil
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	return freed
}

// expired counts the oldest messages not younger than cutoff.
func (r *ring) expired(cutoff time.Time) int {
	i := 0
	for i < r.n && !r.at(i).Time.After(cutoff) {
		i++
	}
	return i
}

// evict drops the node's oldest messages, whatever their topic, until
// history holds at most nine tenths of HistoryBytes, so that evictions
// come in rounds. A round that is already running does the work.
func (s *Store) evict() {
	if !s.evicting.TryLock() {
		return
	}
	defer s.evicting.Unlock()
	s.mu.RLock()
	topics := make([]*topic, 0, len(s.topics))
	for _, t := range s.topics {
		topics = append(topics, t)
	}
	s.mu.RUnlock()
	h := make(oldestFirst, 0, len(topics))
	for _, t := range topics {
		t.mu.Lock()
		if t.history.n > 0 {
			h = append(h, heads{t, t.history.at(0).Time})
		}
		t.mu.Unlock()
	}
	heap.Init(&h)
	target := s.cfg.HistoryBytes / 10 * 9
	defer s.forgetEmpty(target)
	for h.Len() > 0 && s.historyBytes.Load() > target {
		t := h[0].t
		t.mu.Lock()
		if t.history.n > 0 {
			s.historyBytes.Add(-t.history.dropOldest(1))
			s.evicted.Add(1)
		}
		if t.history.n > 0 {
			h[0].at = t.history.at(0).Time
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
		t.mu.Unlock()
	}
}

// forgetEmpty forgets topics that hold no history, no idempotency key and
// no watch, least recently used first, while history holds more than
// target: records of topics nobody uses count against the budget too.
func (s *Store) forgetEmpty(target int64) {
	if s.historyBytes.Load() <= target {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type idle struct {
		name string
		t    *topic
		used time.Time
	}
	var empty []idle
	for name, t := range s.topics {
		if s.watched[name] > 0 || !t.mu.TryLock() {
			continue
		}
		if t.history.n == 0 && len(t.keys) == 0 {
			empty = append(empty, idle{name, t, t.used})
		}
		t.mu.Unlock()
	}
	slices.SortFunc(empty, func(a, b idle) int { return a.used.Compare(b.used) })
	for _, e := range empty {
		if s.historyBytes.Load() <= target {
			break
		}
		t := e.t
		t.mu.Lock()
		if t.history.n == 0 && len(t.keys) == 0 && !t.gone {
			delete(s.topics, e.name)
			t.gone = true
			s.historyBytes.Add(-t.footprint())
			t.history = ring{}
			s.evicted.Add(1)
		}
		t.mu.Unlock()
	}
}

// heads is a topic and the time of its oldest message in history.
type heads struct {
	t  *topic
	at time.Time
}

// oldestFirst is a heap of topics by their oldest message.
type oldestFirst []heads

func (h oldestFirst) Len() int           { return len(h) }
func (h oldestFirst) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h oldestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *oldestFirst) Push(x any)        { *h = append(*h, x.(heads)) }
func (h *oldestFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// HistoryBytes returns the bytes history holds, by the measure that
// Config.HistoryBytes bounds.
func (s *Store) HistoryBytes() int64 { return s.historyBytes.Load() }

// Evicted returns how many messages, and records of topics left with no
// history, were dropped to keep history within Config.HistoryBytes.
func (s *Store) Evicted() uint64 { return s.evicted.Load() }
