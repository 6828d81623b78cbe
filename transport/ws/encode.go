package ws

import (
	"bytes"
	"encoding/json"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
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
	b = session.AppendMessageStart(b, m)
	b = session.AppendMessageEnd(b, sub)
	return frame(ws.OpText, b)
}

// Event encodes a frame that is not part of a topic's stream (join,
// leave) as one text frame.
func (Encoder) Event(v any) []byte { return jsonFrame(v) }

// MessageShared encodes the payload of a `message` frame up to and
// including data: the part that every delivery through a wildcard
// pattern shares. It has no frame header.
func (Encoder) MessageShared(m *broker.Message) []byte {
	b := make([]byte, 0, 200+len(m.Topic)+len(m.Epoch)+len(m.Data))
	return session.AppendMessageStart(b, m)
}

// MessageEnds encodes the frame header in front of shared and the
// `"sub"` member and closing brace after it, for a delivery through sub.
func (Encoder) MessageEnds(shared []byte, sub string) (head, tail []byte) {
	// One allocation holds both: the header's room, then the tail.
	b := make([]byte, headroom, headroom+10+len(sub)+2)
	b = session.AppendMessageEnd(b, sub)
	tail = b[headroom:]
	n := len(shared) + len(tail)
	start := headerStart(b[:headroom], ws.OpText, n)
	return b[start:headroom:headroom], tail
}

// Subscribed encodes a `subscribed` frame.
func (Encoder) Subscribed(ref, topic string, pos *broker.Position, recovered bool) []byte {
	f := session.Subscribed{Type: "subscribed", Ref: ref, Topic: topic, Recovered: recovered}
	if pos != nil {
		f.Offset, f.Epoch = &pos.Offset, pos.Epoch
	}
	return jsonFrame(f)
}

// Reset encodes a `reset` frame.
func (Encoder) Reset(topic, sub string, pos broker.Position, reason string) []byte {
	return jsonFrame(session.Reset{Type: "reset", Topic: topic, Sub: sub, Epoch: pos.Epoch, Offset: pos.Offset, Reason: reason})
}

// jsonFrame encodes v as the payload of a text frame, without HTML
// escaping so that patterns such as "a.>" read as sent; a
// session.RawReply is sent as it is.
func jsonFrame(v any) []byte {
	if raw, ok := v.(session.RawReply); ok {
		b := make([]byte, headroom, headroom+len(raw))
		return frame(ws.OpText, append(b, raw...))
	}
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

// closeFrame encodes a close frame with code and reason.
func closeFrame(code ws.StatusCode, reason string) []byte {
	return ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}
