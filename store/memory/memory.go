// Package memory is the embedded single-node store: offsets, history,
// idempotency keys and relay in process, no external service. Offsets run
// 1, 2, 3, … per topic within the topic's epoch; history keeps, per topic,
// the last HistorySize messages younger than HistoryTTL. A topic that no
// exact subscription watches and that has been idle for longer than its
// history and idempotency keys live is forgotten; if it is used again it
// starts over in a new epoch. Config.HistoryFor sets the history of each
// topic apart (the config file's namespaces).
package memory

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/metric"
)

// ErrClosed is returned by a store that has been closed.
var ErrClosed = errors.New("memory: store is closed")

// Defaults of Config: what a zero field means.
const (
	// DefaultHistorySize is Config.HistorySize's default, in messages per
	// topic.
	DefaultHistorySize = 100
	// DefaultHistoryTTL is Config.HistoryTTL's default.
	DefaultHistoryTTL = 5 * time.Minute
	// DefaultHistoryBytes is Config.HistoryBytes' default: 256 MiB.
	DefaultHistoryBytes = 256 << 20
	// DefaultIdempotencyWindow is Config.IdempotencyWindow's default.
	DefaultIdempotencyWindow = 5 * time.Minute
)

// Config tunes a Store. A zero field means its default: the Default*
// constant its comment names, or what it says for nil. None of the bounds
// can be turned off; a negative one means its default, like zero.
type Config struct {
	// HistorySize is how many messages per topic history keeps. Zero or
	// negative means DefaultHistorySize (100).
	HistorySize int
	// HistoryTTL is how long a message stays in history. Zero or negative
	// means DefaultHistoryTTL (5 minutes).
	HistoryTTL time.Duration
	// HistoryBytes bounds the bytes that history holds on the node, every
	// topic together, its rings and topic records included; over it the
	// oldest messages of the node are dropped first, then the records of
	// unwatched topics left with no history, least recently used first.
	// Zero or negative means DefaultHistoryBytes (256 MiB).
	HistoryBytes int64
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered on its topic. Zero or negative means
	// DefaultIdempotencyWindow (5 minutes).
	IdempotencyWindow time.Duration
	// HistoryFor returns the history size and TTL of a topic, in place of
	// HistorySize and HistoryTTL; a zero or negative result means that
	// field. It is asked at each publish and read, so its answers may
	// change (a reload): a topic whose size shrinks drops its oldest
	// messages at its next publish. Nil: every topic has HistorySize and
	// HistoryTTL.
	HistoryFor broker.HistoryFor
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// MeterProvider receives the store's metrics (history bytes, evicted
	// messages, topics). Nil (the default) turns metrics off.
	MeterProvider metric.MeterProvider
}

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	HistorySize:       DefaultHistorySize,
	HistoryTTL:        DefaultHistoryTTL,
	HistoryBytes:      DefaultHistoryBytes,
	IdempotencyWindow: DefaultIdempotencyWindow,
	Now:               time.Now,
}

// withDefaults returns c with every zero (or negative) field set to its
// default.
func (c Config) withDefaults() Config { return defaults.Fill(c, configDefaults) }

// Store is the in-memory broker.Store. It also implements broker.Watcher,
// to keep the topics that exact subscriptions follow.
type Store struct {
	cfg Config
	// ctl is the store's control plane (control.Backend).
	ctl *controlState
	// idle is how long a topic stays unused before it is forgotten: the
	// longer of the history TTL and the idempotency window.
	idle time.Duration
	stop chan struct{}
	done chan struct{}

	// historyBytes is what every topic's history holds, by messageSize;
	// evicted counts the messages dropped to keep it within HistoryBytes.
	historyBytes atomic.Int64
	evicted      atomic.Uint64
	// evicting lets one eviction run at a time.
	evicting sync.Mutex

	// mu guards topics, peakTopics, watched, sink and closed.
	mu         sync.RWMutex
	topics     map[string]*topic
	peakTopics int            // the most topics held since topics was last rebuilt
	watched    map[string]int // exact topic → subscriptions watching it
	sink       broker.Deliverer
	closed     bool
}

var (
	_ broker.Store   = (*Store)(nil)
	_ broker.Watcher = (*Store)(nil)
)

// topic is one topic's sequence, history and idempotency keys.
type topic struct {
	// mu guards every field below, and serialises deliveries of the topic.
	mu      sync.Mutex
	epoch   string
	offset  uint64
	history ring
	keys    map[string]answer // idempotency key → first publish's answer
	used    time.Time         // last publish or read
	gone    bool              // forgotten: the record is no longer in topics
}

// answer is what a publish with an idempotency key was told.
type answer struct {
	id      string
	offset  uint64
	time    time.Time
	expires time.Time
}

// New returns an empty store. Close stops its sweeper.
func New(cfg Config) *Store {
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:     cfg,
		idle:    max(cfg.HistoryTTL, cfg.IdempotencyWindow),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		topics:  make(map[string]*topic),
		watched: make(map[string]int),
	}
	s.ctl = newControlState(cfg.Now)
	s.setupMetrics()
	go s.sweep()
	return s
}

// setupMetrics registers the store's metrics, read when scraped.
func (s *Store) setupMetrics() {
	if s.cfg.MeterProvider == nil {
		return
	}
	in := telemetry.NewInstruments(telemetry.Meter(s.cfg.MeterProvider, telemetry.Scope("store/memory")))
	in.Observe(
		telemetry.UpDownCounter("tidings.history.bytes", "By", "Bytes history holds on this node (bounded by -history-bytes).",
			func(o telemetry.Observation) { o(s.historyBytes.Load()) }),
		telemetry.Counter("tidings.history.evicted", "{message}", "Messages, and records of topics left empty, dropped from history, oldest first, to stay within -history-bytes.",
			func(o telemetry.Observation) { o(int64(s.evicted.Load())) }),
		telemetry.UpDownCounter("tidings.store.topics", "{topic}", "Topics the store keeps a sequence and history for.",
			func(o telemetry.Observation) { o(int64(s.Topics())) }),
	)
	// The store has no logger: OpenTelemetry's error handler reports it
	// (on stderr unless the program installs its own).
	in.HandleErr("store/memory")
}

func newEpoch() string { return uuid.NewString()[:8] }

// Listen sets the Deliverer that receives every published message.
func (s *Store) Listen(d broker.Deliverer) {
	s.mu.Lock()
	s.sink = d
	s.mu.Unlock()
}

// Watch keeps pattern's topic while a subscription follows it, so that
// its epoch and offsets go on. Wildcard patterns keep nothing.
func (s *Store) Watch(ctx context.Context, pattern string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if broker.IsPattern(pattern) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.watched[pattern]++
	return nil
}

// Unwatch drops one Watch of pattern.
func (s *Store) Unwatch(pattern string) {
	if broker.IsPattern(pattern) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watched[pattern]--; s.watched[pattern] <= 0 {
		delete(s.watched, pattern)
	}
}

// lock returns the topic's record, created with a new epoch if needed,
// locked, and the Deliverer.
func (s *Store) lock(name string) (*topic, broker.Deliverer, error) {
	for {
		s.mu.RLock()
		t, sink, closed := s.topics[name], s.sink, s.closed
		s.mu.RUnlock()
		if closed {
			return nil, nil, ErrClosed
		}
		if t == nil {
			s.mu.Lock()
			if t = s.topics[name]; t == nil {
				t = &topic{epoch: newEpoch()}
				s.topics[name] = t
				s.historyBytes.Add(recordSize)
				s.peakTopics = max(s.peakTopics, len(s.topics))
			}
			sink = s.sink
			s.mu.Unlock()
		}
		t.mu.Lock()
		if !t.gone {
			t.used = s.cfg.Now()
			return t, sink, nil
		}
		// Forgotten between the look-up and the lock: look again.
		t.mu.Unlock()
	}
}

// Publish assigns each message the next offset of its topic, appends it to
// history and delivers it, one topic at a time in offset order. A message
// whose idempotency key the topic remembers is marked Duplicate and given
// the first publish's answer instead.
func (s *Store) Publish(ctx context.Context, msgs []*broker.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		t, sink, err := s.lock(m.Topic)
		if err != nil {
			return err
		}
		if m.IdempotencyKey != "" {
			if a, ok := t.keys[m.IdempotencyKey]; ok && t.used.Before(a.expires) {
				m.ID, m.Offset, m.Epoch, m.Time, m.Duplicate = a.id, a.offset, t.epoch, a.time, true
				t.mu.Unlock()
				continue
			}
		}
		t.offset++
		m.Offset = t.offset
		m.Epoch = t.epoch
		size, _ := s.history(m.Topic)
		s.historyBytes.Add(t.history.fit(size) + t.history.push(m, size))
		if m.IdempotencyKey != "" {
			if t.keys == nil {
				t.keys = make(map[string]answer)
			}
			t.keys[m.IdempotencyKey] = answer{id: m.ID, offset: m.Offset, time: m.Time, expires: t.used.Add(s.cfg.IdempotencyWindow)}
		}
		if sink != nil {
			sink.Deliver(m)
		}
		t.mu.Unlock()
	}
	if s.historyBytes.Load() > s.cfg.HistoryBytes {
		s.evict()
	}
	return nil
}

// Position returns the topic's last offset and its epoch.
func (s *Store) Position(ctx context.Context, name string) (broker.Position, error) {
	if err := ctx.Err(); err != nil {
		return broker.Position{}, err
	}
	t, _, err := s.lock(name)
	if err != nil {
		return broker.Position{}, err
	}
	defer t.mu.Unlock()
	return broker.Position{Offset: t.offset, Epoch: t.epoch}, nil
}

// Since returns the messages after since.Offset still in history.
func (s *Store) Since(ctx context.Context, name string, since broker.Position) ([]*broker.Message, broker.Position, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, broker.Position{}, false, err
	}
	t, _, err := s.lock(name)
	if err != nil {
		return nil, broker.Position{}, false, err
	}
	defer t.mu.Unlock()
	pos := broker.Position{Offset: t.offset, Epoch: t.epoch}
	if since.Epoch != t.epoch || since.Offset > t.offset {
		return nil, pos, false, nil
	}
	if since.Offset == t.offset {
		return nil, pos, true, nil
	}
	h := &t.history
	first := s.first(name, h)
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

// Recent returns at most limit of the topic's last messages still in
// history, in offset order, and its current position.
func (s *Store) Recent(ctx context.Context, name string, limit int) ([]*broker.Message, broker.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, broker.Position{}, err
	}
	t, _, err := s.lock(name)
	if err != nil {
		return nil, broker.Position{}, err
	}
	defer t.mu.Unlock()
	pos := broker.Position{Offset: t.offset, Epoch: t.epoch}
	h := &t.history
	from := max(s.first(name, h), h.n-max(limit, 0))
	out := make([]*broker.Message, 0, h.n-from)
	for i := from; i < h.n; i++ {
		out = append(out, h.at(i))
	}
	return out, pos, nil
}

// Topics returns how many topics the store holds.
func (s *Store) Topics() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.topics)
}

// history returns the history size and TTL of topic.
func (s *Store) history(topic string) (int, time.Duration) {
	return s.cfg.HistoryFor.Bounds(topic, s.cfg.HistorySize, s.cfg.HistoryTTL)
}

// first returns the index in h, the history of topic, of its oldest
// message still in it: younger than the topic's TTL and among its last
// size messages (a ring that a reload shrank holds more until the
// topic's next publish).
func (s *Store) first(topic string, h *ring) int {
	size, ttl := s.history(topic)
	return max(h.expired(s.cfg.Now().Add(-ttl)), h.n-size)
}

// sweep drops expired messages and keys, and forgets idle topics, so that
// topics nobody uses any more hold no memory.
func (s *Store) sweep() {
	defer close(s.done)
	tick := time.NewTicker(s.idle / 2)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.Sweep()
		}
	}
}

// Sweep runs one pass of the sweeper now: it drops expired messages and
// idempotency keys, and forgets every topic that no exact subscription
// watches and that nobody has published to or read for longer than both
// its history TTL and the idempotency window.
func (s *Store) Sweep() {
	s.mu.RLock()
	names := make([]string, 0, len(s.topics))
	for name := range s.topics {
		names = append(names, name)
	}
	s.mu.RUnlock()
	now := s.cfg.Now()
	for _, name := range names {
		_, ttl := s.history(name)
		cutoff := now.Add(-ttl)
		s.mu.Lock()
		t := s.topics[name]
		if t == nil {
			s.mu.Unlock()
			continue
		}
		t.mu.Lock()
		if s.watched[name] == 0 && now.Sub(t.used) > max(ttl, s.cfg.IdempotencyWindow) {
			delete(s.topics, name)
			t.gone = true
			s.historyBytes.Add(-t.history.dropOldest(t.history.n) - t.footprint())
			t.history = ring{}
		}
		s.mu.Unlock()
		if !t.gone {
			s.historyBytes.Add(-t.history.dropOldest(t.history.expired(cutoff)))
			for k, a := range t.keys {
				if !now.Before(a.expires) {
					delete(t.keys, k)
				}
			}
		}
		t.mu.Unlock()
	}
	s.mu.Lock()
	if s.peakTopics > 1024 && len(s.topics) < s.peakTopics/4 {
		// A Go map keeps its buckets when entries are deleted: copy what
		// is left so that the memory of forgotten topics is returned.
		topics := make(map[string]*topic, len(s.topics))
		for name, t := range s.topics {
			topics[name] = t
		}
		s.topics, s.peakTopics = topics, len(topics)
	}
	s.mu.Unlock()
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
