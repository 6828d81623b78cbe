package redis

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tidings-io/tidings/broker"
)

// The relay's payloads, as the publish script sends them:
//
//	<offset> <epoch> <body>                 one message
//	B<len>:<offset> <epoch> <body><len>:…   several messages of one channel
//
// where <len> is the decimal length in bytes of the entry after its colon.
// A message published alone travels in the first form, which every node
// reads; the messages of a topic stored in one script run travel in the
// second, in offset order, as one Redis message.

// batchMark starts a payload that carries several messages.
const batchMark = 'B'

// decodeRelayed reads a relayed payload and hands each message it
// carries to each, in order. The messages of one payload are allocated
// together, once. A malformed entry ends the payload; the messages
// before it have been handed on, and the gap it leaves is repaired from
// history when the topic's next message arrives.
func decodeRelayed(p string, each func(*broker.Message)) error {
	if p == "" || p[0] != batchMark {
		m, err := decodePayload(p)
		if err != nil {
			return err
		}
		each(m)
		return nil
	}
	n, framed := entries(p[1:])
	msgs := make([]broker.Message, n)
	rest := p[1:]
	for i := range msgs {
		var entry string
		entry, rest = nextEntry(rest)
		if err := decodePayloadInto(entry, &msgs[i]); err != nil {
			return err
		}
		each(&msgs[i])
	}
	if !framed {
		return errEnvelope
	}
	return nil
}

// entries counts the well-framed entries at the start of a batch
// payload's list, and tells whether the whole list is well framed.
func entries(list string) (int, bool) {
	n := 0
	for list != "" {
		entry, rest := nextEntry(list)
		if entry == "" {
			return n, false
		}
		n++
		list = rest
	}
	return n, n > 0
}

// nextEntry splits "<len>:<entry>…" into the entry and the rest, or
// returns "" when the list does not start with a well-framed entry.
func nextEntry(list string) (entry, rest string) {
	size, after, ok := strings.Cut(list, ":")
	n, err := strconv.Atoi(size)
	if !ok || err != nil || n <= 0 || n > len(after) {
		return "", ""
	}
	return after[:n], after[n:]
}

// decodeBody reads a body into a new message with the given position;
// see decodeBodyInto.
func decodeBody(body string, offset uint64, epoch string) (*broker.Message, error) {
	m := new(broker.Message)
	if err := decodeBodyInto(body, offset, epoch, m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeBodyInto reads a body into m with the given position. Bodies in
// encodeBody's layout are read in place: the message's ID, Topic and
// Data share body's bytes, which nothing modifies. Any other layout
// (bodies of earlier versions, escaped ids) is read with encoding/json.
func decodeBodyInto(body string, offset uint64, epoch string, m *broker.Message) error {
	if !decodeLayout(body, m) {
		got, err := decodeBodyJSON(body, offset, epoch)
		if err != nil {
			return err
		}
		*m = *got
	}
	m.Offset, m.Epoch = offset, epoch
	return nil
}

// decodeLayout reads body into m when it is exactly in encodeBody's
// layout with no escape in its strings:
//
//	{"id":"…","topic":"…","time":N[,"trace":{"k":"v",…}],"data":…}
//
// and data spans the rest of the object. Bodies are checked to be one
// JSON value when they are written (encodeBody); here only the extent of
// data is found, which is what a string in it could confuse.
func decodeLayout(body string, m *broker.Message) bool {
	r := reader{s: body}
	if !r.lit(`{"id":`) {
		return false
	}
	id, ok := r.str()
	if !ok || id == "" || !r.lit(`,"topic":`) {
		return false
	}
	topic, ok := r.str()
	if !ok || topic == "" || !r.lit(`,"time":`) {
		return false
	}
	ns, ok := r.int()
	if !ok {
		return false
	}
	var trace map[string]string
	if r.lit(`,"trace":{`) {
		if trace, ok = r.trace(); !ok {
			return false
		}
	}
	if !r.lit(`,"data":`) {
		return false
	}
	start := r.i
	if !r.skipValue() || r.s[r.i:] != "}" || r.i == start {
		return false
	}
	data := body[start:r.i]
	*m = broker.Message{
		ID: id, Topic: topic, Time: time.Unix(0, ns), Trace: trace,
		Data: unsafe.Slice(unsafe.StringData(data), len(data)),
	}
	return true
}

// reader scans a body in place.
type reader struct {
	s string
	i int
}

// lit consumes prefix when the input continues with it.
func (r *reader) lit(prefix string) bool {
	if !strings.HasPrefix(r.s[r.i:], prefix) {
		return false
	}
	r.i += len(prefix)
	return true
}

// str consumes a JSON string without escapes or control characters and
// returns its contents; strings needing more are left to encoding/json.
func (r *reader) str() (string, bool) {
	if r.i >= len(r.s) || r.s[r.i] != '"' {
		return "", false
	}
	start := r.i + 1
	for j := start; j < len(r.s); j++ {
		switch c := r.s[j]; {
		case c == '"':
			v := r.s[start:j]
			if !utf8.ValidString(v) {
				return "", false
			}
			r.i = j + 1
			return v, true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// int consumes an optionally negative decimal integer.
func (r *reader) int() (int64, bool) {
	j := r.i
	if j < len(r.s) && r.s[j] == '-' {
		j++
	}
	for j < len(r.s) && r.s[j] >= '0' && r.s[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(r.s[r.i:j], 10, 64)
	if err != nil {
		return 0, false
	}
	r.i = j
	return n, true
}

// trace consumes the members of a trace object, after its brace, and its
// closing brace.
func (r *reader) trace() (map[string]string, bool) {
	trace := make(map[string]string, 3)
	if r.lit("}") {
		return trace, true
	}
	for {
		k, ok := r.str()
		if !ok || !r.lit(":") {
			return nil, false
		}
		v, ok := r.str()
		if !ok {
			return nil, false
		}
		trace[k] = v
		if r.lit("}") {
			return trace, true
		}
		if !r.lit(",") {
			return nil, false
		}
	}
}

// skipValue consumes one JSON value, finding its end by its brackets and
// strings; it does not check the grammar within.
func (r *reader) skipValue() bool {
	depth := 0
	for r.i < len(r.s) {
		c := r.s[r.i]
		switch c {
		case '"':
			if !r.skipString() {
				return false
			}
			if depth == 0 {
				return true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return true // the end of the enclosing object: a scalar ended
			}
			depth--
			if depth == 0 {
				r.i++
				return true
			}
		}
		r.i++
	}
	return depth == 0
}

// skipString consumes a JSON string, escapes included.
func (r *reader) skipString() bool {
	for j := r.i + 1; j < len(r.s); j++ {
		switch r.s[j] {
		case '\\':
			j++
		case '"':
			r.i = j + 1
			return true
		}
	}
	return false
}
