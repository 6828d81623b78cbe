package redis

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/broker"
)

// TestEnvelopeCarriesTraceContext: the trace context a message carries
// is stored and relayed with it, and costs nothing when there is none.
func TestEnvelopeCarriesTraceContext(t *testing.T) {
	t.Parallel()
	trace := map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "vendor=1",
		"baggage":     "tenant=acme",
	}
	m := &broker.Message{ID: "id-1", Topic: "a.b", Time: time.Unix(0, 42), Data: json.RawMessage(`{"x":1}`), Trace: trace}
	body, err := encodeBody(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePayload("7 e1 " + body)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Trace) != 3 {
		t.Fatalf("relayed trace %v, want %v", got.Trace, trace)
	}
	for k, v := range trace {
		if got.Trace[k] != v {
			t.Errorf("relayed %s = %q, want %q", k, got.Trace[k], v)
		}
	}
	if got.Offset != 7 || got.Epoch != "e1" || string(got.Data) != `{"x":1}` {
		t.Errorf("relayed %+v", got)
	}

	m.Trace = nil
	body, _ = encodeBody(m)
	if strings.Contains(body, "trace") {
		t.Errorf("body %s mentions trace with none", body)
	}
	if got, _ := decodePayload("1 e1 " + body); got.Trace != nil {
		t.Errorf("decoded trace %v from a body without one", got.Trace)
	}
}

// dataValues are JSON values that a re-encoding would change: HTML
// characters, line separators, escaped and raw non-ASCII, numbers beyond
// float64, insignificant whitespace and every kind of string escape. The
// envelope must carry each of them byte for byte (docs/PROTOCOL.md).
var dataValues = []struct{ name, json string }{
	{"html", `"<b>&amp;</b>"`},
	{"html-in-object", `{"s":"<b>&amp;</b>"}`},
	{"line-separators-raw", "\"a\u2028b\u2029c\""},
	{"line-separators-escaped", `"a\u2028b\u2029c"`},
	{"non-ascii-raw", `"é"`},
	{"non-ascii-escaped", `"\u00e9"`},
	{"emoji-raw", `"😀"`},
	{"surrogate-pair-escaped", `"\ud83d\ude00"`},
	{"uppercase-escapes", `"\u00E9\uD83D\uDE00"`},
	{"lone-surrogate-escaped", `"\udc00"`},
	{"huge-exponent", `1e400`},
	{"negative-zero", `-0`},
	{"trailing-zero", `0.10`},
	{"big-integer", `12345678901234567890123`},
	{"spaced-object", `{ "a" : [ 1 , 2 ] }`},
	{"tabs-and-newlines", "{\n\t\"a\":\t[1,\r\n\t\t2]\n}"},
	{"spaced-empties", `[ { } , [ ] , "" ]`},
	{"escaped-solidus", `"a\/b"`},
	{"escaped-quote-and-backslash", `"say \"hi\" \\ there"`},
	{"control-escapes", `"\b\f\n\r\t\u0000\u001f\u007f"`},
	{"literals", `[true,false,null]`},
	{"null", `null`},
}

// TestEnvelopeKeepsDataByteForByte: data comes back from a stored body,
// a relayed payload and a history entry exactly as it was published,
// with the other fields of the message.
func TestEnvelopeKeepsDataByteForByte(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 123456789)
	trace := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	for _, tc := range dataValues {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !json.Valid([]byte(tc.json)) {
				t.Fatalf("test value %q is not JSON", tc.json)
			}
			m := &broker.Message{ID: "1f0c4a4e-0d7e-4c38-9d1e-3b9f1c7c2a10", Topic: "a.b", Time: at, Data: json.RawMessage(tc.json), Trace: trace}
			body, err := encodeBody(m)
			if err != nil {
				t.Fatal(err)
			}
			decoders := []struct {
				path   string
				decode func() (*broker.Message, error)
			}{
				{"stored body", func() (*broker.Message, error) { return decodeBody(body, 9, "e1") }},
				{"relayed payload", func() (*broker.Message, error) { return decodePayload("9 e1 " + body) }},
				{"history entry", func() (*broker.Message, error) {
					return decodeEntry(goredis.XMessage{ID: "9-0", Values: map[string]any{"m": body}}, "e1")
				}},
			}
			for _, d := range decoders {
				got, err := d.decode()
				if err != nil {
					t.Fatalf("%s: %v (body %q)", d.path, err, body)
				}
				if string(got.Data) != tc.json {
					t.Errorf("%s: data %q, published %q (body %q)", d.path, got.Data, tc.json, body)
				}
				if got.ID != m.ID || got.Topic != m.Topic || !got.Time.Equal(at) || got.Offset != 9 || got.Epoch != "e1" ||
					len(got.Trace) != 1 || got.Trace["traceparent"] != trace["traceparent"] {
					t.Errorf("%s: decoded %+v from %q", d.path, got, body)
				}
			}
		})
	}
}

// TestEnvelopeKeepsStringFields: ids, topics and trace values that need
// escaping come back as they were.
func TestEnvelopeKeepsStringFields(t *testing.T) {
	t.Parallel()
	odd := "q\"b\\s/c\x00\x1f\n\t<>&\u2028é😀\x7f"
	m := &broker.Message{ID: odd, Topic: odd + "t", Time: time.Unix(0, -5), Data: json.RawMessage(`1`),
		Trace: map[string]string{"traceparent": odd, "": "", "baggage": "k=v"}}
	body, err := encodeBody(m)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid([]byte(body)) {
		t.Fatalf("body %q is not JSON", body)
	}
	got, err := decodePayload("1 e " + body)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != m.ID || got.Topic != m.Topic || !got.Time.Equal(m.Time) || string(got.Data) != "1" || len(got.Trace) != 3 {
		t.Fatalf("decoded %+v from %q", got, body)
	}
	for k, v := range m.Trace {
		if got.Trace[k] != v {
			t.Errorf("trace %q = %q, want %q", k, got.Trace[k], v)
		}
	}
}

// TestDecodeBodyReadsEarlierBodies: bodies written by earlier versions,
// data before trace and HTML escaped, are still read from history and
// from nodes not yet upgraded.
func TestDecodeBodyReadsEarlierBodies(t *testing.T) {
	t.Parallel()
	body := `{"id":"id-1","topic":"a.b","time":42,"data":{"s":"\u003cb\u003e"},"trace":{"traceparent":"tp"}}`
	got, err := decodePayload("3 e1 " + body)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "id-1" || got.Topic != "a.b" || got.Time.UnixNano() != 42 || string(got.Data) != `{"s":"\u003cb\u003e"}` ||
		got.Trace["traceparent"] != "tp" || got.Offset != 3 || got.Epoch != "e1" {
		t.Fatalf("decoded %+v", got)
	}
}

// TestEncodeBodyRefusesInvalidData: a body is never written that no node
// could read back.
func TestEncodeBodyRefusesInvalidData(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"", "{", `{"a":1}x`, `"\x01"`, "1 2"} {
		m := &broker.Message{ID: "id", Topic: "a.b", Time: time.Unix(0, 1), Data: json.RawMessage(data)}
		if body, err := encodeBody(m); err == nil {
			t.Errorf("data %q encoded as %q, want an error", data, body)
		}
	}
}

// BenchmarkEncodeBody measures the encoding on the publish path.
func BenchmarkEncodeBody(b *testing.B) {
	trace := map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "vendor=1",
	}
	big := json.RawMessage(`{"items":[` + strings.Repeat(`{"id":12345,"name":"item <x>","price":1.25},`, 24) + `{}]}`)
	for _, bc := range []struct {
		name  string
		data  json.RawMessage
		trace map[string]string
	}{
		{"small", json.RawMessage(`{"bid":1.08,"ask":1.09}`), nil},
		{"small-traced", json.RawMessage(`{"bid":1.08,"ask":1.09}`), trace},
		{"1KiB", big, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := &broker.Message{ID: "1f0c4a4e-0d7e-4c38-9d1e-3b9f1c7c2a10", Topic: "prices.eur.usd", Time: time.Now(), Data: bc.data, Trace: bc.trace}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encodeBody(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
