// Package memory is the embedded single-node store: offsets, history and
// relay in process, no external service. Offsets run 1, 2, 3, … per topic
// within one epoch per process start; history keeps, per topic, the last
// HistorySize messages younger than HistoryTTL.
package memory

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
)

// ErrClosed is returned by a store that has been closed.
var ErrClosed = errors.New("memory: store is closed")

// Config tunes a Store. The zero value of each field means its default.
type Config struct {
	// HistorySize is how many messages per topic history keeps. Default 100.
	HistorySize int
	// HistoryTTL is how long a message stays in history. Default 5 minutes.
	HistoryTTL time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.HistorySize <= 0 {
		c.HistorySize = 100
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Store is the in-memory broker.Store.
type Store struct {
	cfg   Config
	epoch string
	stop  chan struct{}
	done  chan struct{}

	// mu guards topics, sink and closed.
	mu     sync.RWMutex
	topics map[string]*topic
	sink   broker.Deliverer
	closed bool
}

// topic is one topic's sequence and history.
type topic struct {
	// mu guards offset and history, and serialises deliveries of the topic.
	mu      sync.Mutex
	offset  uint64
	history ring
}

// ring holds a topic's newest messages, at most its capacity, oldest first.
type ring struct {
	buf  []*broker.Message
	head int // index of the oldest message
	n    int
}

// push appends m, dropping the oldest message when full.
func (r *ring) push(m *broker.Message, size int) {
	if r.buf == nil {
		r.buf = make([]*broker.Message, size)
	}
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = m
		r.n++
		return
	}
	r.buf[r.head] = m
	r.head = (r.head + 1) % len(r.buf)
}

// at returns the i-th oldest message.
func (r *ring) at(i int) *broker.Message { return r.buf[(r.head+i)%len(r.buf)] }

// dropOldest forgets the k oldest messages.
func (r *ring) dropOldest(k int) {
	for ; k > 0 && r.n > 0; k-- {
		r.buf[r.head] = nil
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
}

// expired counts the oldest messages not younger than cutoff.
func (r *ring) expired(cutoff time.Time) int {
	i := 0
	for i < r.n && !r.at(i).Time.After(cutoff) {
		i++
	}
	return i
}

// New returns a store with a fresh epoch. Close stops its history sweeper.
func New(cfg Config) *Store {
	s := &Store{
		cfg:    cfg.withDefaults(),
		epoch:  uuid.NewString()[:8],
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		topics: make(map[string]*topic),
	}
	go s.sweep()
	return s
}

// Epoch returns the epoch every topic of this store shares.
func (s *Store) Epoch() string { return s.epoch }

// Listen sets the Deliverer that receives every published message.
func (s *Store) Listen(d broker.Deliverer) {
	s.mu.Lock()
	s.sink = d
	s.mu.Unlock()
}

// topicFor returns the topic's record, creating it when create is set.
func (s *Store) topicFor(name string, create bool) (*topic, broker.Deliverer, error) {
	s.mu.RLock()
	t, sink, closed := s.topics[name], s.sink, s.closed
	s.mu.RUnlock()
	if closed {
		return nil, nil, ErrClosed
	}
	if t != nil || !create {
		return t, sink, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t = s.topics[name]; t == nil {
		t = &topic{}
		s.topics[name] = t
	}
	return t, s.sink, nil
}

// Publish assigns each message the next offset of its topic, appends it to
// history and delivers it, one topic at a time in offset order.
func (s *Store) Publish(ctx context.Context, msgs []*broker.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		t, sink, err := s.topicFor(m.Topic, true)
		if err != nil {
			return err
		}
		t.mu.Lock()
		t.offset++
		m.Offset = t.offset
		m.Epoch = s.epoch
		t.history.push(m, s.cfg.HistorySize)
		if sink != nil {
			sink.Deliver(m)
		}
		t.mu.Unlock()
	}
	return nil
}

// Position returns the topic's last offset and the store's epoch.
func (s *Store) Position(ctx context.Context, name string) (broker.Position, error) {
	if err := ctx.Err(); err != nil {
		return broker.Position{}, err
	}
	t, _, err := s.topicFor(name, true)
	if err != nil {
		return broker.Position{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return broker.Position{Offset: t.offset, Epoch: s.epoch}, nil
}

// Since returns the messages after since.Offset still in history.
func (s *Store) Since(ctx context.Context, name string, since broker.Position) ([]*broker.Message, broker.Position, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, broker.Position{}, false, err
	}
	t, _, err := s.topicFor(name, true)
	if err != nil {
		return nil, broker.Position{}, false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pos := broker.Position{Offset: t.offset, Epoch: s.epoch}
	if since.Epoch != s.epoch || since.Offset > t.offset {
		return nil, pos, false, nil
	}
	if since.Offset == t.offset {
		return nil, pos, true, nil
	}
	h := &t.history
	first := h.expired(s.cutoff())
	if first == h.n || h.at(first).Offset > since.Offset+1 {
		return nil, pos, false, nil
	}
	from := first + int(since.Offset+1-h.at(first).Offset)
	out := make([]*broker.Message, 0, h.n-from)
	for i := from; i < h.n; i++ {
		out = append(out, h.at(i))
	}
	return out, pos, true, nil
}

// cutoff is the time at or before which messages have expired.
func (s *Store) cutoff() time.Time { return s.cfg.Now().Add(-s.cfg.HistoryTTL) }

// sweep drops expired messages so idle topics do not hold memory.
func (s *Store) sweep() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.HistoryTTL / 2)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.mu.RLock()
			topics := make([]*topic, 0, len(s.topics))
			for _, t := range s.topics {
				topics = append(topics, t)
			}
			s.mu.RUnlock()
			for _, t := range topics {
				t.mu.Lock()
				t.history.dropOldest(t.history.expired(s.cutoff()))
				t.mu.Unlock()
			}
		}
	}
}

// Close stops the sweeper; later calls fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}
