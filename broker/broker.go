// Package broker is Tidings' fan-out engine: topics and wildcard patterns,
// sharded topic hubs, sessions' subscriptions, publish and delivery, and the
// resume logic that merges history with the live stream. It knows nothing of
// WebSocket, HTTP or Redis: transports hand it sessions and an Encoder, and a
// Store relays and keeps messages.
package broker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/internal/defaults"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Config: what a zero field means.
const (
	// DefaultShards is Config.Shards' default.
	DefaultShards = 64
	// DefaultQueueSize is Config.QueueSize's default, in frames.
	DefaultQueueSize = 1024
	// DefaultQueueBytes is Config.QueueBytes' default: 4 MiB.
	DefaultQueueBytes = 4 << 20
	// DefaultOutboundBytes is Config.OutboundBytes' default: 512 MiB.
	DefaultOutboundBytes = 512 << 20
	// DefaultMaxSubscriptions is Config.MaxSubscriptions' default.
	DefaultMaxSubscriptions = 1000
	// DefaultMaxPatternSegments is Config.MaxPatternSegments' default.
	DefaultMaxPatternSegments = 16
	// DefaultMaxSessionPatternSegments is Config.MaxSessionPatternSegments'
	// default.
	DefaultMaxSessionPatternSegments = 2048
	// DefaultMaxPatternNodes is Config.MaxPatternNodes' default (about
	// 50 MB of pattern index).
	DefaultMaxPatternNodes = 1 << 18
)

// Config tunes a Broker. A zero field means its default: the Default*
// constant its comment names, or what it says for nil. None of the bounds
// can be turned off; a negative one means its default, like zero.
type Config struct {
	// Shards is the number of topic hub shards. Zero or negative means
	// DefaultShards (64).
	Shards int
	// QueueSize bounds each session's outbound queue in frames. Zero or
	// negative means DefaultQueueSize (1024).
	QueueSize int
	// QueueBytes bounds each session's outbound queue in bytes. Zero or
	// negative means DefaultQueueBytes (4 MiB).
	QueueBytes int
	// OutboundBytes bounds the bytes queued in every session's outbound
	// queue together; over it the sessions with the fullest queues are
	// cut as slow consumers first. Zero or negative means
	// DefaultOutboundBytes (512 MiB).
	OutboundBytes int64
	// MaxSubscriptions bounds the subscriptions one session may hold at
	// once; one more is refused with ErrTooManySubscriptions. Zero or
	// negative means DefaultMaxSubscriptions (1000).
	MaxSubscriptions int
	// MaxPatternSegments bounds the segments of a wildcard pattern; a
	// deeper one is refused as invalid. Zero or negative means
	// DefaultMaxPatternSegments (16).
	MaxPatternSegments int
	// MaxSessionPatternSegments bounds the segments of all of one
	// session's wildcard patterns together, which bounds the pattern index
	// nodes the session can make the node hold (one per segment at most);
	// over it a subscription is refused with ErrTooManySubscriptions.
	// Zero or negative means DefaultMaxSessionPatternSegments (2048).
	MaxSessionPatternSegments int
	// MaxPatternNodes bounds the pattern index's nodes on the node, for
	// every session together; a wildcard subscription that would need
	// more is refused with ErrNodeFull. Zero or negative means
	// DefaultMaxPatternNodes (262144, about 50 MB).
	MaxPatternNodes int
	// Topics returns the options of a topic's namespace that the broker
	// applies (see TopicOptions). Nil: every topic has the zero
	// TopicOptions.
	Topics func(topic string) TopicOptions
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// TracerProvider traces publishes (store.append) and deliveries
	// (deliver). Nil (the default) turns tracing off, at the cost of one
	// nil check.
	TracerProvider trace.TracerProvider
	// MeterProvider receives the broker's metrics (sessions,
	// subscriptions, topics, messages published and delivered, slow
	// consumers, resumes, resets). Nil (the default) turns metrics off.
	MeterProvider metric.MeterProvider
	// Propagator writes and reads the trace context a message carries
	// between nodes (Message.Trace). Nil means W3C trace context
	// and baggage.
	Propagator propagation.TextMapPropagator
}

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	Shards:                    DefaultShards,
	QueueSize:                 DefaultQueueSize,
	QueueBytes:                DefaultQueueBytes,
	MaxSubscriptions:          DefaultMaxSubscriptions,
	OutboundBytes:             DefaultOutboundBytes,
	MaxPatternSegments:        DefaultMaxPatternSegments,
	MaxSessionPatternSegments: DefaultMaxSessionPatternSegments,
	MaxPatternNodes:           DefaultMaxPatternNodes,
	Now:                       time.Now,
}

// withDefaults returns c with every zero (or negative) field set to its
// default.
func (c Config) withDefaults() Config { return defaults.Fill(c, configDefaults) }

// Broker routes published messages to the sessions subscribed to them.
type Broker struct {
	cfg      Config
	store    Store
	watcher  Watcher // nil when the store relays every topic everywhere
	observer SubscriptionObserver
	// encs holds the encoders, indexed by Encoding; AddEncoder, under
	// encMu, replaces the slice.
	encs     atomic.Pointer[[]Encoder]
	encMu    sync.Mutex
	shards   []shard
	patterns *patternIndex[*subscription]
	budget   *Budget
	stats    counters
	tel      telemetry
	// maxSubs is Config.MaxSubscriptions, which SetMaxSubscriptions
	// changes.
	maxSubs atomic.Int64
}

// shard holds the exact-topic hubs whose topic hashes to it.
type shard struct {
	// mu guards hubs and every hub's subs and each subscription's index.
	mu   sync.RWMutex
	hubs map[string]*hub
}

// hub is one topic's local subscribers on this node.
type hub struct {
	subs []*subscription
	// encodings counts subs by their session's encoding, so that a
	// delivery knows each frame's sharers without a pass over subs.
	encodings [MaxEncodings]int
}

// counters are the broker's live statistics.
type counters struct {
	sessions      atomic.Int64
	exactSubs     atomic.Int64
	wildcardSubs  atomic.Int64
	topics        atomic.Int64
	published     [len(apis)]atomic.Uint64 // by api: http, ws, other
	delivered     atomic.Uint64
	slowConsumers atomic.Uint64
	// patternRefusals counts wildcard subscriptions refused because the
	// node's pattern index was full.
	patternRefusals atomic.Uint64
	outcomes        outcomeStats
}

// Stats is a snapshot of the broker's statistics.
type Stats struct {
	// Sessions currently open.
	Sessions int64
	// ExactSubscriptions and WildcardSubscriptions currently held.
	ExactSubscriptions, WildcardSubscriptions int64
	// Topics with at least one local exact subscriber.
	Topics int64
	// Published counts messages accepted by Publish on this node.
	Published uint64
	// Delivered counts frames queued to subscribers on this node.
	Delivered uint64
	// SlowConsumers counts sessions whose outbound queue overflowed.
	SlowConsumers uint64
	// OutboundBytes is what every session's outbound queue holds.
	OutboundBytes int64
	// BudgetCuts counts sessions cut because the node's outbound queues
	// held Config.OutboundBytes (also counted in SlowConsumers).
	BudgetCuts uint64
	// PatternNodes is the number of nodes of the wildcard pattern index.
	PatternNodes int64
	// PatternRefusals counts wildcard subscriptions refused because the
	// pattern index held Config.MaxPatternNodes nodes.
	PatternRefusals uint64
}

// New returns a broker that publishes through store and encodes frames with
// enc. It registers itself as the store's Deliverer.
func New(cfg Config, store Store, enc Encoder) *Broker {
	cfg = cfg.withDefaults()
	b := &Broker{
		cfg:      cfg,
		store:    store,
		shards:   make([]shard, cfg.Shards),
		patterns: newPatternIndex[*subscription](cfg.MaxPatternNodes),
		budget:   NewBudget(cfg.OutboundBytes),
		observer: noObserver{},
	}
	encs := []Encoder{enc}
	b.encs.Store(&encs)
	for i := range b.shards {
		b.shards[i].hubs = make(map[string]*hub)
	}
	b.maxSubs.Store(int64(cfg.MaxSubscriptions))
	if w, ok := store.(Watcher); ok {
		b.watcher = w
	}
	b.setupTelemetry()
	store.Listen(b)
	return b
}

// Stats returns a snapshot of the broker's statistics.
func (b *Broker) Stats() Stats {
	return Stats{
		Sessions:              b.stats.sessions.Load(),
		ExactSubscriptions:    b.stats.exactSubs.Load(),
		WildcardSubscriptions: b.stats.wildcardSubs.Load(),
		Topics:                b.stats.topics.Load(),
		Published:             b.stats.published[0].Load() + b.stats.published[1].Load() + b.stats.published[2].Load(),
		Delivered:             b.stats.delivered.Load(),
		SlowConsumers:         b.stats.slowConsumers.Load(),
		OutboundBytes:         b.budget.Used(),
		BudgetCuts:            b.budget.Cuts(),
		PatternNodes:          int64(b.patterns.size()),
		PatternRefusals:       b.stats.patternRefusals.Load(),
	}
}

func (b *Broker) shard(topic string) *shard {
	// FNV-1a, inline so that hashing a topic does not allocate.
	h := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		h ^= uint32(topic[i])
		h *= 16777619
	}
	return &b.shards[h%uint32(len(b.shards))]
}

// Publish validates pubs, stamps each with an id and time, and hands them to
// the store as one all-or-nothing batch. A batch with any invalid message
// publishes none. Store failures wrap ErrUnavailable; a batch the store
// could store only in part (Redis Cluster, several slots) fails with an
// error wrapping ErrPartialBatch and returns the messages too: those with
// an Offset were stored. A message marked Duplicate repeats an earlier
// publish with its idempotency key: it answers as that one did and was
// not published again.
//
// With tracing on, each message carries the trace context of the span in
// ctx (the HTTP or WebSocket publish span) to every node that delivers
// it, and the store's work is traced as store.append. WithAPI names the
// API the messages are counted under.
func (b *Broker) Publish(ctx context.Context, pubs []Publication) ([]*Message, error) {
	if len(pubs) == 0 {
		return nil, ErrEmptyBatch
	}
	for i, p := range pubs {
		if err := b.check(p); err != nil {
			return nil, inMessage(i, err)
		}
	}
	now := b.cfg.Now()
	msgs := make([]*Message, len(pubs))
	for i, p := range pubs {
		msgs[i] = &Message{ID: uuid.NewString(), Topic: p.Topic, Time: now, Data: p.Data, IdempotencyKey: p.IdempotencyKey}
	}
	var err error
	if b.tel.tracer != nil {
		var end func(error)
		ctx, end = b.startAppend(ctx, msgs)
		err = b.store.Publish(ctx, msgs)
		end(err)
	} else {
		err = b.store.Publish(ctx, msgs)
	}
	stored := 0
	for _, m := range msgs {
		if m.Offset > 0 && !m.Duplicate {
			stored++
		}
	}
	b.stats.published[apiIndex(ctx)].Add(uint64(stored))
	if errors.Is(err, ErrPartialBatch) {
		return msgs, WrapErrorf(ErrUnavailable, err, "%s", ErrPartialBatch.Message)
	}
	if err != nil {
		return nil, WrapError(ErrUnavailable, err)
	}
	return msgs, nil
}

// addExact registers s in its topic's hub.
func (b *Broker) addExact(s *subscription) {
	sh := b.shard(s.pattern)
	sh.mu.Lock()
	h := sh.hubs[s.pattern]
	if h == nil {
		h = &hub{}
		sh.hubs[s.pattern] = h
		b.stats.topics.Add(1)
	}
	s.index = len(h.subs)
	h.subs = append(h.subs, s)
	h.encodings[s.sess.enc]++
	sh.mu.Unlock()
	b.stats.exactSubs.Add(1)
}

// removeExact takes s out of its topic's hub, dropping the hub when empty.
func (b *Broker) removeExact(s *subscription) {
	sh := b.shard(s.pattern)
	sh.mu.Lock()
	h := sh.hubs[s.pattern]
	if h != nil && s.index < len(h.subs) && h.subs[s.index] == s {
		last := len(h.subs) - 1
		h.subs[s.index] = h.subs[last]
		h.subs[s.index].index = s.index
		h.subs[last] = nil
		h.subs = h.subs[:last]
		h.encodings[s.sess.enc]--
		if len(h.subs) == 0 {
			delete(sh.hubs, s.pattern)
			b.stats.topics.Add(-1)
		}
	}
	sh.mu.Unlock()
	b.stats.exactSubs.Add(-1)
}

func (b *Broker) add(s *subscription) error {
	if s.wildcard {
		if _, err := b.patterns.insert(s.pattern, s); err != nil {
			return err
		}
		b.stats.wildcardSubs.Add(1)
		return nil
	}
	b.addExact(s)
	return nil
}

func (b *Broker) remove(s *subscription) {
	if s.wildcard {
		b.patterns.remove(s.pattern, s)
		b.stats.wildcardSubs.Add(-1)
	} else {
		b.removeExact(s)
	}
	s.mu.Lock()
	s.removed = true
	watched, observed := s.watched, s.observed
	s.observed = false
	s.mu.Unlock()
	if watched {
		b.watcher.Unwatch(s.pattern)
	}
	if observed {
		b.observer.Unsubscribed(s.sess, s.pattern)
	}
}

// watch asks the relay to carry s's pattern to this node, when the relay
// needs asking, and returns once it does.
func (b *Broker) watch(ctx context.Context, s *subscription) error {
	if b.watcher == nil {
		return nil
	}
	if err := b.watcher.Watch(ctx, s.pattern); err != nil {
		return err
	}
	s.mu.Lock()
	removed := s.removed
	s.watched = !removed
	s.mu.Unlock()
	if removed {
		b.watcher.Unwatch(s.pattern)
		return ErrSessionClosed
	}
	return nil
}

// History returns a topic's messages still in history, for the server
// API: with since, those after since.Offset (recovered is false, and no
// message returned, when since.Epoch is not current or history no longer
// reaches since.Offset+1); without, the last ones. At most limit, in
// offset order; pos is the topic's current position.
func (b *Broker) History(ctx context.Context, topic string, since *Position, limit int) (msgs []*Message, pos Position, recovered bool, err error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, Position{}, false, err
	}
	if since == nil {
		msgs, pos, err = b.store.Recent(ctx, topic, limit)
		recovered = true
	} else {
		msgs, pos, recovered, err = b.store.Since(ctx, topic, *since)
		if len(msgs) > limit {
			msgs = msgs[:limit]
		}
	}
	if err != nil {
		return nil, Position{}, false, WrapError(ErrUnavailable, err)
	}
	return msgs, pos, recovered, nil
}
