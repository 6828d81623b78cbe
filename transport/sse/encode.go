package sse

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
)

// Encoder builds complete Server-Sent Events for the broker's events: an
// `event:` line naming the frame's type, a `data:` line carrying exactly
// the JSON the WebSocket frame carries, and a blank line. It is stateless;
// the zero value is ready to use.
//
// The events of an exact topic's stream (a `message` delivered through an
// exact subscription, a `subscribed` with a position, an exact `reset`)
// open with a comment line, a position marker (`:~m 12 chat.room abcd`),
// which the session's writer replaces with an `id:` line carrying the
// session's resume cursor: a frame is encoded once for every subscriber,
// the cursor is each session's own. A client reading the encoded bytes
// as they are sees a comment, which SSE ignores.
//
// A newline inside a JSON value can only be whitespace between its
// tokens; one in a message's data (published pretty-printed) continues
// the event on a further `data:` line, which an SSE client joins back
// with "\n" (a carriage return comes back as "\n" too: the same JSON).
type Encoder struct{}

var _ broker.Encoder = Encoder{}

// Position marker kinds: the byte after ":~".
const (
	// markMessage: a message at offset; the stream's position moves there.
	markMessage = 'm'
	// markPosition: the stream continues after this position (a
	// subscribe that did not recover, a reset).
	markPosition = 'p'
	// markKeep: a subscribe that recovered; the position the client
	// resumed from stands.
	markKeep = 'k'
)

// messageHead opens every `message` event.
const messageHead = "event: message\ndata: "

// Message encodes a `message` event.
func (Encoder) Message(m *broker.Message, sub string) []byte {
	b := make([]byte, 0, 240+2*len(m.Topic)+2*len(m.Epoch)+len(sub)+len(m.Data))
	if sub == "" {
		b = appendMark(b, markMessage, m.Topic, broker.Position{Offset: m.Offset, Epoch: m.Epoch})
	}
	b = append(b, messageHead...)
	b = appendMessageJSON(b, m)
	b = session.AppendMessageEnd(b, sub)
	return append(b, "\n\n"...)
}

// MessageShared encodes the JSON of a `message` event up to and including
// its data: what every delivery through a wildcard pattern shares.
func (Encoder) MessageShared(m *broker.Message) []byte {
	b := make([]byte, 0, 200+len(m.Topic)+len(m.Epoch)+len(m.Data))
	return appendMessageJSON(b, m)
}

// MessageEnds encodes the event and data field names in front of shared,
// and the `"sub"` member, closing brace and blank line after it.
func (Encoder) MessageEnds(_ []byte, sub string) (head, tail []byte) {
	b := make([]byte, 0, len(messageHead)+len(sub)+12)
	b = append(b, messageHead...)
	b = session.AppendMessageEnd(b, sub)
	b = append(b, "\n\n"...)
	return b[:len(messageHead):len(messageHead)], b[len(messageHead):]
}

// Subscribed encodes a `subscribed` event.
func (Encoder) Subscribed(ref, topic string, pos *broker.Position, recovered bool) []byte {
	f := session.Subscribed{Type: "subscribed", Ref: ref, Topic: topic, Recovered: recovered}
	var b []byte
	if pos != nil {
		f.Offset, f.Epoch = &pos.Offset, pos.Epoch
		kind := byte(markPosition)
		if recovered {
			kind = markKeep
		}
		b = appendMark(b, kind, topic, *pos)
	}
	return appendEvent(b, "subscribed", marshal(f))
}

// Reset encodes a `reset` event.
func (Encoder) Reset(topic, sub string, pos broker.Position, reason string) []byte {
	var b []byte
	if sub == "" {
		b = appendMark(b, markPosition, topic, pos)
	}
	return appendEvent(b, "reset", marshal(session.Reset{Type: "reset", Topic: topic, Sub: sub, Epoch: pos.Epoch, Offset: pos.Offset, Reason: reason}))
}

// Event encodes an event that is not part of a topic's stream (join,
// leave), named by its type.
func (Encoder) Event(v any) []byte { return encodeReply(v) }

// encodeReply encodes v, a JSON object with a type member (or a
// session.RawReply), as one event named by that type.
func encodeReply(v any) []byte {
	raw, ok := v.(session.RawReply)
	if !ok {
		raw = marshal(v)
	}
	var head struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &head)
	return appendEvent(nil, head.Type, raw)
}

// closeEvent encodes the `close` event that ends a stream.
func closeEvent(code uint16, reason string) []byte {
	b := append([]byte(`{"code":`), strconv.FormatUint(uint64(code), 10)...)
	b = append(b, `,"reason":`...)
	b = session.AppendString(b, reason)
	return appendEvent(nil, "close", append(b, '}'))
}

// appendEvent appends an event of type typ ("" or a type with a line
// break: none, the client's default, message) carrying data.
func appendEvent(b []byte, typ string, data []byte) []byte {
	if typ != "" && !strings.ContainsAny(typ, "\r\n") {
		b = append(b, "event: "...)
		b = append(b, typ...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = appendLines(b, data)
	return append(b, "\n\n"...)
}

// appendMessageJSON appends what session.AppendMessageStart does, each
// line break of the data continued on a further data line.
func appendMessageJSON(b []byte, m *broker.Message) []byte {
	if !bytes.ContainsAny(m.Data, "\r\n") {
		return session.AppendMessageStart(b, m)
	}
	return appendLines(b, session.AppendMessageStart(nil, m))
}

// appendLines appends p, each CR, LF or CRLF in it replaced by a line
// break and a new `data: ` field.
func appendLines(b, p []byte) []byte {
	for {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			return append(b, p...)
		}
		b = append(b, p[:i]...)
		b = append(b, "\ndata: "...)
		if p[i] == '\r' && i+1 < len(p) && p[i+1] == '\n' {
			i++
		}
		p = p[i+1:]
	}
}

// appendMark appends the position marker of kind for topic at pos:
// ":~<kind> <offset> <topic> <epoch>\n". Topics hold no spaces or line
// breaks (broker.ValidateTopic); an epoch with a line break gets no
// marker, and its events no id.
func appendMark(b []byte, kind byte, topic string, pos broker.Position) []byte {
	if strings.ContainsAny(pos.Epoch, "\r\n") || strings.ContainsAny(topic, " \r\n") {
		return b
	}
	b = append(b, ':', '~', kind, ' ')
	b = strconv.AppendUint(b, pos.Offset, 10)
	b = append(b, ' ')
	b = append(b, topic...)
	b = append(b, ' ')
	b = append(b, pos.Epoch...)
	return append(b, '\n')
}

// parseMark parses the marker that opens frame, if any: its kind, topic
// and position, and the frame after it.
func parseMark(frame []byte) (kind byte, topic string, pos broker.Position, rest []byte, ok bool) {
	if len(frame) < 4 || frame[0] != ':' || frame[1] != '~' {
		return 0, "", pos, frame, false
	}
	nl := bytes.IndexByte(frame, '\n')
	if nl < 0 {
		return 0, "", pos, frame, false
	}
	kind, line, rest := frame[2], string(frame[4:nl]), frame[nl+1:]
	off, line, ok1 := strings.Cut(line, " ")
	topic, epoch, ok2 := strings.Cut(line, " ")
	n, err := strconv.ParseUint(off, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return 0, "", pos, rest, false
	}
	return kind, topic, broker.Position{Offset: n, Epoch: epoch}, rest, true
}

// marshal encodes v without HTML escaping, so that patterns such as
// "a.>" read as sent.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// The reply types always marshal.
		panic("sse: encoding an event: " + err.Error())
	}
	b := buf.Bytes()
	return b[:len(b)-1] // drop Encode's newline
}
