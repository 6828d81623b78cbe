package broker

import (
	"context"
	"encoding/json"
	"time"
)

// Message is one published message as stored and delivered.
type Message struct {
	// ID is a UUID assigned when the message is accepted.
	ID string
	// Topic is the exact topic the message was published to.
	Topic string
	// Offset is the message's place in the topic's sequence (1, 2, 3, …).
	Offset uint64
	// Epoch names the topic's sequence; offsets restart when it changes.
	Epoch string
	// Time is when the broker accepted the message.
	Time time.Time
	// Data is the published JSON value, byte for byte.
	Data json.RawMessage
	// IdempotencyKey, when set, makes the publish idempotent: the store
	// remembers the key with the message's answer for its idempotency
	// window, per topic, and a later publish with the same key on the same
	// topic is not stored again.
	IdempotencyKey string
	// Duplicate is set by the store when IdempotencyKey was already used
	// on the topic: nothing was stored or relayed, and ID, Offset, Epoch
	// and Time are those of the first publish.
	Duplicate bool
	// Trace carries the trace context of the publish that accepted the
	// message (W3C traceparent, tracestate and baggage, by header name),
	// so that every node that delivers it traces its deliver span in the
	// same trace. Nil when tracing was off where it was published. Stores
	// keep and relay it with the message; it is not modified once
	// published, and the messages of one batch share it.
	Trace map[string]string
}

// Publication is a message as a publisher hands it in.
type Publication struct {
	// Topic is an exact topic (no wildcards).
	Topic string
	// Data is any JSON value; it is delivered unchanged.
	Data json.RawMessage
	// IdempotencyKey, when set, makes a retry of this publication on the
	// same topic within the store's idempotency window answer as the first
	// publish did, and store nothing.
	IdempotencyKey string
}

// Position is a point in a topic's stream: the last offset seen within an
// epoch.
type Position struct {
	// Offset is the last offset delivered or stored (0: none yet).
	Offset uint64
	// Epoch names the stream the offset belongs to.
	Epoch string
}

// Relay assigns offsets, appends messages to history and carries each
// message to every node's Deliverer, this node's included.
type Relay interface {
	// Publish stores msgs as one all-or-nothing step, filling in each
	// message's Offset and Epoch, and relays them for delivery. A message
	// whose IdempotencyKey was already used on its topic within the
	// idempotency window is not stored again: the store marks it Duplicate
	// and fills in the first publish's ID, Offset, Epoch and Time. A store
	// that cannot make a batch one step (topics on several Redis Cluster
	// slots) returns an error wrapping ErrPartialBatch when only some
	// messages were stored; those have their Offset set.
	Publish(ctx context.Context, msgs []*Message) error
	// Listen sets the node's Deliverer. It is called once, before any
	// Publish. Deliveries for one topic are made one at a time, in offset
	// order.
	Listen(d Deliverer)
}

// Deliverer receives every message relayed to this node.
type Deliverer interface {
	// Deliver hands m to local subscribers. It never blocks on a client.
	Deliver(m *Message)
	// Reset tells local subscribers of topic that its stream continues
	// after pos, not after what they last received: reason is
	// ResetHistoryLost (a new epoch) or ResetGap (messages were missed and
	// history no longer holds them).
	Reset(topic string, pos Position, reason string)
}

// Reasons carried by reset frames.
const (
	// ResetHistoryLost: the store lost the topic's history; a new epoch
	// starts.
	ResetHistoryLost = "history_lost"
	// ResetGap: messages were missed and history no longer holds them.
	ResetGap = "gap"
)

// Watcher is implemented by relays that carry a topic to a node only while
// the node has local subscribers for it. The broker calls Watch for every
// new subscription before it reads the topic's position, and Unwatch when
// the subscription ends; the relay counts them.
type Watcher interface {
	// Watch returns once messages on pattern (an exact topic or a wildcard
	// pattern) are being relayed to this node.
	Watch(ctx context.Context, pattern string) error
	// Unwatch drops one Watch of pattern.
	Unwatch(pattern string)
}

// History answers where a topic's stream stands and what it still holds.
type History interface {
	// Position returns the topic's current position, creating its epoch if
	// the topic has none yet.
	Position(ctx context.Context, topic string) (Position, error)
	// Since returns the messages after since.Offset, in offset order, and
	// the topic's current position. recovered is false when since.Epoch is
	// not the current epoch or history no longer reaches since.Offset+1; no
	// messages are returned then.
	Since(ctx context.Context, topic string, since Position) (msgs []*Message, pos Position, recovered bool, err error)
	// Recent returns at most limit of the topic's last messages still in
	// history, in offset order, and the topic's current position.
	Recent(ctx context.Context, topic string, limit int) (msgs []*Message, pos Position, err error)
}

// Store is a Relay with the History behind it: one backend does both.
type Store interface {
	Relay
	History
}

// Encoder turns broker events into complete transport frames. Each frame is
// encoded once per encoding (see Encoding) and the same bytes are queued
// to every subscriber whose session has that encoding.
type Encoder interface {
	// Message encodes a delivery of m; sub is the wildcard pattern it
	// matched, or "" for an exact subscription.
	Message(m *Message, sub string) []byte
	// MessageShared encodes the part of m's frames that every delivery
	// through a wildcard pattern shares, so that a message matched by many
	// patterns is encoded once, not once per pattern. It may return nil
	// (a compressed frame shares nothing): the broker then encodes each
	// pattern's frame whole with Message.
	MessageShared(m *Message) []byte
	// MessageEnds encodes what a delivery through sub adds around shared
	// (from MessageShared): head, shared and tail together are the frame
	// Message(m, sub) returns. Either may be empty.
	MessageEnds(shared []byte, sub string) (head, tail []byte)
	// Subscribed encodes the answer to a subscribe. pos is nil for
	// wildcard subscriptions.
	Subscribed(ref, topic string, pos *Position, recovered bool) []byte
	// Reset encodes a reset notice for topic delivered through sub ("" for
	// an exact subscription): the stream continues after pos.
	Reset(topic, sub string, pos Position, reason string) []byte
	// Event encodes a frame that is not part of a topic's stream (join,
	// leave): v marshals to its JSON object.
	Event(v any) []byte
}
