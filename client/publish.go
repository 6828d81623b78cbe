package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/protocol"
)

// Message is one message of a batch.
type Message struct {
	// Topic is the exact topic to publish to.
	Topic string
	// Data is the message: any value json.Marshal accepts, or raw JSON
	// as a json.RawMessage or []byte, sent byte for byte.
	Data any
	// IdempotencyKey makes the publish safe to repeat: a second publish
	// with the same key to the same topic within the broker's window
	// stores nothing and answers as the first did. Empty: the client
	// generates one (a UUID) for this call and its retries.
	IdempotencyKey string
}

// Published is where the broker stored a message.
type Published struct {
	// ID is the message's UUID; Topic its topic.
	ID, Topic string
	// Offset is its position in the topic, within Epoch.
	Offset uint64
	// Epoch is the topic's epoch (it changes when history is lost).
	Epoch string
}

// Position returns the message's position, for SubscribeOptions.Since
// or HistoryOptions.Since.
func (p Published) Position() Position { return Position{Offset: p.Offset, Epoch: p.Epoch} }

// publishResult is the broker's answer for one message.
type publishResult struct {
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (r publishResult) published() Published {
	return Published{ID: r.ID, Topic: r.Topic, Offset: r.Offset, Epoch: r.Epoch}
}

// Publish publishes data to an exact topic over HTTP (POST /v1/publish)
// and returns where the broker stored it. data is encoded with
// json.Marshal (without HTML escaping), except a json.RawMessage or a
// []byte, which must hold valid JSON and are sent byte for byte, as
// subscribers then receive them.
//
// Concurrent calls share requests: while the client's publish requests
// are in flight, calls queue up and go together in the next one, a POST
// /v1/publish/batch (Config.MaxPublishBatch). Each still gets its own
// answer: a batch the broker refuses for one message's sake is sent
// again message by message. A call made while the client is idle is sent
// at once, alone.
//
// Every publish carries an idempotency key, a fresh UUID, kept across the
// client's retries (Config.Retries: after a network error, a 429 or a
// 503), so a retry never stores the message twice. To make your own
// retries safe too, use PublishBatch with a Message.IdempotencyKey of
// yours. Errors are *Error (see IsCode), or ctx's error.
func (c *Client) Publish(ctx context.Context, topic string, data any) (Published, error) {
	raw, err := encodeData(data)
	if err != nil {
		return Published{}, err
	}
	return c.publish(ctx, &publishCall{topic: topic, raw: raw, key: uuid.NewString(), wake: make(chan struct{}, 1)})
}

// publishAlone sends call as one POST /v1/publish and settles it.
func (c *Client) publishAlone(ctx context.Context, call *publishCall) {
	var b bytes.Buffer
	b.WriteString(`{"topic":`)
	writeString(&b, call.topic)
	b.WriteString(`,"data":`)
	b.Write(call.raw)
	b.WriteByte('}')
	h := http.Header{}
	h.Set("Idempotency-Key", call.key)
	var res publishResult
	if _, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/publish", body: b.Bytes(), header: h}, &res); err != nil {
		call.err = err
		return
	}
	call.res = res.published()
}

// PublishBatch publishes msgs in one request (POST /v1/publish/batch) and
// returns one result per message, in order. The batch is all or nothing:
// if any message is invalid the broker rejects it whole (400) and
// publishes none. Each message carries its IdempotencyKey, or a generated
// one, kept across the client's retries.
//
// On a Redis Cluster a batch over several topics may be stored in part
// (503 unavailable, after the retries): PublishBatch then returns the
// error together with the results, where the messages that were not
// stored have a zero Offset. Retrying the same msgs with the same keys
// (set IdempotencyKey yourself to do so) stores the rest.
func (c *Client) PublishBatch(ctx context.Context, msgs []Message) ([]Published, error) {
	var b bytes.Buffer
	b.WriteString(`{"messages":[`)
	for i, m := range msgs {
		raw, err := encodeData(m.Data)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"topic":`)
		writeString(&b, m.Topic)
		b.WriteString(`,"data":`)
		b.Write(raw)
		b.WriteString(`,"idempotency_key":`)
		key := m.IdempotencyKey
		if key == "" {
			key = uuid.NewString()
		}
		writeString(&b, key)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	var res struct {
		Results []publishResult `json:"results"`
	}
	body, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/publish/batch", body: b.Bytes()}, &res)
	if err != nil {
		// A batch stored in part says which messages were stored.
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusServiceUnavailable && json.Unmarshal(body, &res) == nil && len(res.Results) == len(msgs) {
			out := make([]Published, len(msgs))
			for i, r := range res.Results {
				if r.Error == nil {
					out[i] = r.published()
				} else {
					out[i] = Published{Topic: r.Topic}
				}
			}
			return out, err
		}
		return nil, err
	}
	if len(res.Results) != len(msgs) {
		return nil, &Error{Code: protocol.CodeInternal, Status: http.StatusOK, Message: fmt.Sprintf("the broker answered %d results for %d messages", len(res.Results), len(msgs))}
	}
	out := make([]Published, len(msgs))
	for i, r := range res.Results {
		out[i] = r.published()
	}
	return out, nil
}

// encodeData returns data as JSON: raw JSON as it is, anything else
// through json.Marshal without HTML escaping.
func encodeData(data any) ([]byte, error) {
	var raw []byte
	switch d := data.(type) {
	case json.RawMessage:
		raw = d
	case []byte:
		raw = d
	default:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(data); err != nil {
			return nil, &Error{Code: protocol.CodeBadRequest, Message: "data cannot be encoded as JSON: " + err.Error(), err: err}
		}
		return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
	}
	if !json.Valid(raw) {
		return nil, &Error{Code: protocol.CodeBadRequest, Message: "data is not valid JSON"}
	}
	return raw, nil
}

// writeString writes s as a JSON string.
func writeString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always encodes
	b.Write(enc)
}
