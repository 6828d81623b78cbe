package redis

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidings-io/tidings/broker"
)

var (
	// errEnvelope reports a relayed payload this node cannot read.
	errEnvelope = errors.New("redis: malformed envelope")
	// errData reports a message whose data is not one JSON value.
	errData = errors.New("redis: data is not a JSON value")
)

// envelope is a message's body as stored in history and relayed between
// nodes. Offset and epoch are assigned by the publish script and travel in
// front of it: "<offset> <epoch> <body>". encodeBody writes it by hand;
// decodeBody reads it in place, and bodies of earlier versions with encoding/json.
type envelope struct {
	ID    string `json:"id"`
	Topic string `json:"topic"`
	Time  int64  `json:"time"`
	// Data is the published value, byte for byte: the last field of a
	// body, copied in as it is. json.Unmarshal keeps a RawMessage's bytes
	// verbatim.
	Data json.RawMessage `json:"data"`
	// Trace carries the W3C trace context (traceparent, tracestate,
	// baggage) of the publish, when there is one: broker.Message.Trace.
	Trace map[string]string `json:"trace,omitempty"`
}

// maxSortedTrace is how many trace entries encodeBody sorts without
// allocating; a message carries at most three (traceparent, tracestate,
// baggage).
const maxSortedTrace = 4

// encodeBody encodes m's body once, for history and relay alike:
//
//	{"id":…,"topic":…,"time":…,"trace":{…},"data":…}
//
// with trace omitted when there is none. It is built by hand, in one
// allocation, because encoding/json would rewrite data: json.Marshal
// compacts a RawMessage (dropping insignificant whitespace) and escapes
// <, >, &, U+2028 and U+2029 in it, and an Encoder without HTML escaping
// still compacts. PROTOCOL.md promises data byte for byte, so it is
// appended as it is, after checking that it is one JSON value every node
// can read back.
func encodeBody(m *broker.Message) (string, error) {
	if !json.Valid(m.Data) {
		return "", errData
	}
	// Keys, quotes, braces and the time (at most 20 digits) take under
	// 80 bytes; each trace entry adds its quotes, colon and comma.
	n := 80 + len(m.ID) + len(m.Topic) + len(m.Data)
	for k, v := range m.Trace {
		n += len(k) + len(v) + 6
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(`{"id":`)
	writeString(&b, m.ID)
	b.WriteString(`,"topic":`)
	writeString(&b, m.Topic)
	b.WriteString(`,"time":`)
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], m.Time.UnixNano(), 10))
	if len(m.Trace) > 0 {
		b.WriteString(`,"trace":{`)
		writeTrace(&b, m.Trace)
		b.WriteByte('}')
	}
	b.WriteString(`,"data":`)
	b.Write(m.Data)
	b.WriteByte('}')
	return b.String(), nil
}

// writeTrace writes the entries of trace as JSON object members, in key
// order so that a message always has the same body.
func writeTrace(b *strings.Builder, trace map[string]string) {
	var buf [maxSortedTrace]string
	keys := buf[:0]
	if len(trace) > maxSortedTrace {
		keys = make([]string, 0, len(trace))
	}
	for k := range trace {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(b, k)
		b.WriteByte(':')
		writeString(b, trace[k])
	}
}

// writeString writes s as a JSON string, escaped as encoding/json escapes
// it but for HTML characters, which need no escaping here: quote,
// backslash and control characters are escaped, and each byte of invalid
// UTF-8 becomes U+FFFD. Ids and topics need no escaping, so the common
// case is one copy.
func writeString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i++
			start = i
			continue
		}
		i += size
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// decodeBodyJSON reads a body of any layout into a message with the
// given position, with encoding/json.
func decodeBodyJSON(body string, offset uint64, epoch string) (*broker.Message, error) {
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
	m := new(broker.Message)
	if err := decodePayloadInto(p, m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodePayloadInto reads a relayed "<offset> <epoch> <body>" payload
// into m.
func decodePayloadInto(p string, m *broker.Message) error {
	off, rest, ok := strings.Cut(p, " ")
	if !ok {
		return errEnvelope
	}
	epoch, body, ok := strings.Cut(rest, " ")
	if !ok || epoch == "" {
		return errEnvelope
	}
	offset, err := strconv.ParseUint(off, 10, 64)
	if err != nil || offset == 0 {
		return errEnvelope
	}
	return decodeBodyInto(body, offset, epoch, m)
}
