package redis

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// errEnvelope reports a relayed payload this node cannot read.
var errEnvelope = errors.New("redis: malformed envelope")

// envelope is a message's body as stored in history and relayed between
// nodes. Offset and epoch are assigned by the publish script and travel in
// front of it: "<offset> <epoch> <body>".
type envelope struct {
	ID    string          `json:"id"`
	Topic string          `json:"topic"`
	Time  int64           `json:"time"`
	Data  json.RawMessage `json:"data"`
	// Trace carries the W3C trace context (traceparent, tracestate,
	// baggage) of the publish, when there is one: broker.Message.Trace.
	Trace map[string]string `json:"trace,omitempty"`
}

// encodeBody encodes m's body once, for history and relay alike.
func encodeBody(m *broker.Message) (string, error) {
	b, err := json.Marshal(envelope{ID: m.ID, Topic: m.Topic, Time: m.Time.UnixNano(), Data: m.Data, Trace: m.Trace})
	return string(b), err
}

// decodeBody reads a body into a message with the given position.
func decodeBody(body string, offset uint64, epoch string) (*broker.Message, error) {
	var e envelope
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.ID == "" || e.Topic == "" || len(e.Data) == 0 {
		return nil, errEnvelope
	}
	return &broker.Message{
		ID: e.ID, Topic: e.Topic, Offset: offset, Epoch: epoch,
		Time: time.Unix(0, e.Time), Data: e.Data, Trace: e.Trace,
	}, nil
}

// decodePayload reads a relayed "<offset> <epoch> <body>" payload.
func decodePayload(p string) (*broker.Message, error) {
	off, rest, ok := strings.Cut(p, " ")
	if !ok {
		return nil, errEnvelope
	}
	epoch, body, ok := strings.Cut(rest, " ")
	if !ok || epoch == "" {
		return nil, errEnvelope
	}
	offset, err := strconv.ParseUint(off, 10, 64)
	if err != nil || offset == 0 {
		return nil, errEnvelope
	}
	return decodeBody(body, offset, epoch)
}
