package ws

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
)

// headroom is the space left in front of a payload for the largest server
// frame header (2 + 8 bytes: no mask), so a frame is built in one buffer.
const headroom = 10

// Encoder builds complete WebSocket text frames for the broker's events.
// It is stateless; the zero value is ready to use.
type Encoder struct{}

var _ broker.Encoder = Encoder{}

// Message encodes a `message` frame. Topic, id and pattern are validated
// names and need no escaping; data is copied byte for byte.
func (Encoder) Message(m *broker.Message, sub string) []byte {
	// 200 bytes cover the fixed keys, the id, the offset and the time, so
	// the frame is built in one allocation.
	b := make([]byte, headroom, headroom+200+len(m.Topic)+len(m.Epoch)+len(sub)+len(m.Data))
	b = appendMessageStart(b, m)
	if sub != "" {
		b = append(b, `,"sub":`...)
		b = appendString(b, sub)
	}
	b = append(b, '}')
	return frame(ws.OpText, b)
}

// MessageShared encodes the payload of a `message` frame up to and
// including data: the part that every delivery through a wildcard
// pattern shares. It has no frame header.
func (Encoder) MessageShared(m *broker.Message) []byte {
	b := make([]byte, 0, 200+len(m.Topic)+len(m.Epoch)+len(m.Data))
	return appendMessageStart(b, m)
}

// MessageEnds encodes the frame header in front of shared and the
// `"sub"` member and closing brace after it, for a delivery through sub.
func (Encoder) MessageEnds(shared []byte, sub string) (head, tail []byte) {
	// One allocation holds both: the header's room, then the tail.
	b := make([]byte, headroom, headroom+10+len(sub)+2)
	if sub != "" {
		b = append(b, `,"sub":`...)
		b = appendString(b, sub)
	}
	b = append(b, '}')
	tail = b[headroom:]
	n := len(shared) + len(tail)
	start := headerStart(b[:headroom], ws.OpText, n)
	return b[start:headroom:headroom], tail
}

// appendMessageStart appends a `message` payload up to and including
// data.
func appendMessageStart(b []byte, m *broker.Message) []byte {
	b = append(b, `{"type":"message","topic":`...)
	b = appendString(b, m.Topic)
	b = append(b, `,"id":`...)
	b = appendString(b, m.ID)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, m.Offset, 10)
	b = append(b, `,"epoch":`...)
	b = appendString(b, m.Epoch)
	b = append(b, `,"time":"`...)
	b = m.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	return append(b, m.Data...)
}

// Subscribed encodes a `subscribed` frame.
func (Encoder) Subscribed(ref, topic string, pos *broker.Position, recovered bool) []byte {
	f := subscribedFrame{Type: "subscribed", Ref: ref, Topic: topic, Recovered: recovered}
	if pos != nil {
		f.Offset, f.Epoch = &pos.Offset, pos.Epoch
	}
	return jsonFrame(f)
}

// Reset encodes a `reset` frame.
func (Encoder) Reset(topic, sub string, pos broker.Position, reason string) []byte {
	return jsonFrame(resetFrame{Type: "reset", Topic: topic, Sub: sub, Epoch: pos.Epoch, Offset: pos.Offset, Reason: reason})
}

// Server frames other than `message`, encoded with encoding/json: they are
// not on the per-subscriber hot path.
type (
	subscribedFrame struct {
		Type      string  `json:"type"`
		Ref       string  `json:"ref,omitempty"`
		Topic     string  `json:"topic"`
		Recovered bool    `json:"recovered"`
		Offset    *uint64 `json:"offset,omitempty"`
		Epoch     string  `json:"epoch,omitempty"`
	}
	resetFrame struct {
		Type   string `json:"type"`
		Topic  string `json:"topic"`
		Sub    string `json:"sub,omitempty"`
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
		Reason string `json:"reason"`
	}
)

// jsonFrame encodes v as the payload of a text frame, without HTML
// escaping so that patterns such as "a.>" read as sent.
func jsonFrame(v any) []byte {
	buf := bytes.NewBuffer(make([]byte, headroom, 128))
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// The frame types above always marshal.
		panic("ws: encoding a server frame: " + err.Error())
	}
	b := buf.Bytes()
	return frame(ws.OpText, b[:len(b)-1]) // drop Encode's newline
}

// frame writes an unmasked, final frame header for op into the headroom of
// b (whose payload starts at b[headroom:]) and returns the whole frame.
func frame(op ws.OpCode, b []byte) []byte {
	return b[headerStart(b[:headroom], op, len(b)-headroom):]
}

// headerStart writes the header of an unmasked, final frame of op with a
// payload of n bytes at the end of room (headroom bytes) and returns
// where it starts.
func headerStart(room []byte, op ws.OpCode, n int) int {
	var start int
	switch {
	case n <= 125:
		start = headroom - 2
		room[start+1] = byte(n)
	case n <= 0xffff:
		start = headroom - 4
		room[start+1] = 126
		room[start+2] = byte(n >> 8)
		room[start+3] = byte(n)
	default:
		start = 0
		room[1] = 127
		for i := 0; i < 8; i++ {
			room[2+i] = byte(uint64(n) >> (56 - 8*i))
		}
	}
	room[start] = 0x80 | byte(op)
	return start
}

// appendString appends s as a JSON string. Names the broker produces need
// no escaping, so the common case is a plain copy.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			} else {
				b = append(b, `\ufffd`...)
			}
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// closeFrame encodes a close frame with code and reason.
func closeFrame(code ws.StatusCode, reason string) []byte {
	return ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}
