package sse

import (
	"encoding/base64"
	"encoding/json"

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
	pos  map[string]broker.Position
	text string // the encoding of pos; "" when it must be made again
}

// set moves topic's position.
func (c *cursor) set(topic string, pos broker.Position) {
	if c.pos == nil {
		c.pos = make(map[string]broker.Position)
	}
	c.pos[topic] = pos
	c.text = ""
}

// String encodes the cursor.
func (c *cursor) String() string {
	if c.text == "" {
		m := make(map[string]cursorEntry, len(c.pos))
		for t, p := range c.pos {
			m[t] = cursorEntry{Offset: &p.Offset, Epoch: &p.Epoch}
		}
		b, _ := json.Marshal(m) // keys sorted: the same positions, the same id
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
