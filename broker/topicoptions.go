package broker

import (
	"time"

	"github.com/tidings-io/tidings/protocol"
)

// TopicOptions are the options of a topic's namespace (the config file's
// namespaces) that the broker applies. The zero value is a topic with no
// namespace: resume allowed, no bound on data of its own.
type TopicOptions struct {
	// NoRecovery refuses resume: a subscribe with since is answered
	// recovered false, with no replay, as when history no longer reaches
	// since.
	NoRecovery bool
	// MaxDataSize bounds a published message's data in bytes, inclusive;
	// over it the publish fails with ErrDataTooLarge. Zero or negative: no
	// bound of its own (the transports' bounds on a whole message still
	// apply).
	MaxDataSize int
}

// ErrDataTooLarge: a message's data is larger than its topic's
// TopicOptions.MaxDataSize.
var ErrDataTooLarge = &Error{Code: protocol.CodeTooLarge, Message: "data is too large"}

// topicOptions returns topic's options.
func (b *Broker) topicOptions(topic string) TopicOptions {
	if b.cfg.Topics == nil {
		return TopicOptions{}
	}
	return b.cfg.Topics(topic)
}

// check validates one publication: its topic, that it has data, no
// larger than its topic allows, and its idempotency key.
func (b *Broker) check(p Publication) error {
	if err := ValidateTopic(p.Topic); err != nil {
		return err
	}
	if len(p.Data) == 0 {
		return ErrNoData
	}
	if limit := b.topicOptions(p.Topic).MaxDataSize; limit > 0 && len(p.Data) > limit {
		return NewError(ErrDataTooLarge, "data is larger than the topic's limit of %d bytes", limit)
	}
	return ValidateIdempotencyKey(p.IdempotencyKey)
}

// SetMaxSubscriptions changes Config.MaxSubscriptions (zero or negative:
// DefaultMaxSubscriptions). Sessions that hold more keep them; they may
// not subscribe again until they hold fewer.
func (b *Broker) SetMaxSubscriptions(n int) {
	if n <= 0 {
		n = DefaultMaxSubscriptions
	}
	b.maxSubs.Store(int64(n))
}

// MaxSubscriptions returns the subscriptions one session may hold.
func (b *Broker) MaxSubscriptions() int { return int(b.maxSubs.Load()) }

// HistoryFor gives the history size and TTL of a topic (its namespace's),
// zero for either when the store's own applies.
type HistoryFor func(topic string) (size int, ttl time.Duration)

// Bounds returns topic's history size and TTL: f's, each in place of
// size and ttl when positive; size and ttl when f is nil.
func (f HistoryFor) Bounds(topic string, size int, ttl time.Duration) (int, time.Duration) {
	if f == nil {
		return size, ttl
	}
	sz, tl := f(topic)
	if sz > 0 {
		size = sz
	}
	if tl > 0 {
		ttl = tl
	}
	return size, ttl
}
