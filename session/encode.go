package session

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tidings-io/tidings/broker"
)

// The encoding of a `message` reply, shared by the transports: each
// frames it its own way (a WebSocket frame header, an SSE `data:` line),
// around the same JSON, built without encoding/json on the
// per-subscriber path.

// AppendMessageStart appends the JSON of a `message` reply up to and
// including its data: the part that every delivery of m shares, whatever
// pattern it came through. Topic, id and epoch are names the broker
// validated; data is copied byte for byte.
func AppendMessageStart(b []byte, m *broker.Message) []byte {
	b = append(b, `{"type":"message",`...)
	b = appendMessageHead(b, m.Topic, m.ID, m.Offset, m.Epoch)
	b = append(b, `,"time":"`...)
	b = m.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	return append(b, m.Data...)
}

// appendMessageHead appends a message's topic, id, offset and epoch
// members.
func appendMessageHead(b []byte, topic, id string, offset uint64, epoch string) []byte {
	b = append(b, `"topic":`...)
	b = AppendString(b, topic)
	b = append(b, `,"id":`...)
	b = AppendString(b, id)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, offset, 10)
	b = append(b, `,"epoch":`...)
	return AppendString(b, epoch)
}

// AppendMessageEnd appends what closes a `message` reply after
// AppendMessageStart: the pattern it was delivered through (`"sub"`,
// none for an exact subscription) and the closing brace.
func AppendMessageEnd(b []byte, sub string) []byte {
	if sub != "" {
		b = append(b, `,"sub":`...)
		b = AppendString(b, sub)
	}
	return append(b, '}')
}

// AppendString appends s as a JSON string. Names the broker produces need
// no escaping, so the common case is a plain copy.
func AppendString(b []byte, s string) []byte {
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

// RawReply is a reply already encoded as a JSON object, which a transport
// sends as it is (Transport.Reply): encoding/json would compact the data
// it carries and escape its <, > and &.
type RawReply []byte

// AppendHistory appends the JSON of h: a `history` reply when h has a
// Type, the answer of GET /v1/history otherwise. Each message's data is
// copied byte for byte, as in a `message` frame.
func AppendHistory(b []byte, h History) []byte {
	b = append(b, '{')
	if h.Type != "" {
		b = append(b, `"type":`...)
		b = AppendString(b, h.Type)
		b = append(b, ',')
	}
	if h.Ref != "" {
		b = append(b, `"ref":`...)
		b = AppendString(b, h.Ref)
		b = append(b, ',')
	}
	b = append(b, `"topic":`...)
	b = AppendString(b, h.Topic)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, h.Offset, 10)
	b = append(b, `,"epoch":`...)
	b = AppendString(b, h.Epoch)
	b = append(b, `,"recovered":`...)
	b = strconv.AppendBool(b, h.Recovered)
	b = append(b, `,"messages":[`...)
	for i, m := range h.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendMessageHead(b, m.Topic, m.ID, m.Offset, m.Epoch)
		b = append(b, `,"time":`...)
		b = AppendString(b, m.Time)
		b = append(b, `,"data":`...)
		b = append(b, m.Data...)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}
