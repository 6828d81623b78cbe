package sse

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/tidings-io/tidings/broker"
)

// maxCursorLen bounds the Last-Event-ID a client may send back; a longer
// one is ignored.
const maxCursorLen = 64 << 10

// cursorEntry is one topic's position in a cursor.
type cursorEntry struct {
	Offset *uint64 `json:"offset"`
	Epoch  *string `json:"epoch"`
}

// cursor is a stream's resume point: the position of every exact topic
// it has sent so far. Its text, the `id:` of the stream's events, is
// opaque to clients: today the unpadded base64url of a JSON object
// {topic: {"offset": n, "epoch": e}}.
type cursor struct {
	pos    map[string]broker.Position
	topics []string // the keys of pos, sorted: the same positions, the same id
	text   string   // the encoding of pos; "" when it must be made again
	json   []byte   // String's buffer
}

// set moves topic's position.
func (c *cursor) set(topic string, pos broker.Position) {
	if c.pos == nil {
		c.pos = make(map[string]broker.Position)
	}
	if _, ok := c.pos[topic]; !ok {
		i, _ := slices.BinarySearch(c.topics, topic)
		c.topics = slices.Insert(c.topics, i, topic)
	}
	c.pos[topic] = pos
	c.text = ""
}

// String encodes the cursor.
func (c *cursor) String() string {
	if c.text == "" {
		// Encoded by hand, once per message a stream writes: topics are
		// validated names that need no escaping; an epoch is escaped by
		// encoding/json unless it is plainly safe.
		b := append(c.json[:0], '{')
		for i, t := range c.topics {
			if i > 0 {
				b = append(b, ',')
			}
			p := c.pos[t]
			b = append(b, '"')
			b = append(b, t...)
			b = append(b, `":{"offset":`...)
			b = strconv.AppendUint(b, p.Offset, 10)
			b = append(b, `,"epoch":`...)
			b = appendJSONString(b, p.Epoch)
			b = append(b, '}')
		}
		b = append(b, '}')
		c.json = b
		c.text = base64.RawURLEncoding.EncodeToString(b)
	}
	return c.text
}

// parseCursor decodes a Last-Event-ID: the positions of the exact topics
// it holds. ok is false when id is not a cursor this server wrote; the
// caller then ignores it.
func parseCursor(id string) (map[string]broker.Position, bool) {
	if id == "" || len(id) > maxCursorLen {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return nil, false
	}
	var m map[string]cursorEntry
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, false
	}
	out := make(map[string]broker.Position, len(m))
	for t, e := range m {
		if e.Offset == nil || e.Epoch == nil {
			return nil, false
		}
		if wild, err := broker.ValidatePattern(t); err != nil || wild {
			return nil, false
		}
		out[t] = broker.Position{Offset: *e.Offset, Epoch: *e.Epoch}
	}
	return out, true
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
