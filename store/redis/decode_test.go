package redis

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tidings-io/tidings/broker"
)

// framed returns the payload the publish script sends for entries.
func framed(entries ...string) string {
	var b strings.Builder
	b.WriteByte(batchMark)
	for _, e := range entries {
		fmt.Fprintf(&b, "%d:%s", len(e), e)
	}
	return b.String()
}

func entry(t *testing.T, offset int, data string) string {
	t.Helper()
	body, err := encodeBody(&broker.Message{ID: fmt.Sprintf("id-%d", offset), Topic: "d.t", Time: time.Unix(0, int64(offset)), Data: json.RawMessage(data)})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d e1 %s", offset, body)
}

func relayed(p string) ([]*broker.Message, error) {
	var out []*broker.Message
	err := decodeRelayed(p, func(m *broker.Message) { out = append(out, m) })
	return out, err
}

func TestDecodeRelayedSplitsABatchInOrder(t *testing.T) {
	t.Parallel()
	// Data with newlines, colons and a "B" start: nothing in it is framing.
	datas := []string{`{"a":"1:2"}`, "[\n1,\n2]", `"B3:x"`, `7`}
	var entries []string
	for i, d := range datas {
		entries = append(entries, entry(t, i+1, d))
	}
	got, err := relayed(framed(entries...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(datas) {
		t.Fatalf("%d messages, want %d", len(got), len(datas))
	}
	for i, m := range got {
		if m.Offset != uint64(i+1) || string(m.Data) != datas[i] || m.ID != fmt.Sprintf("id-%d", i+1) || m.Epoch != "e1" {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	// A message alone travels unframed.
	got, err = relayed(entries[0])
	if err != nil || len(got) != 1 || string(got[0].Data) != datas[0] {
		t.Fatalf("one message: %v %v", got, err)
	}
}

func TestDecodeRelayedRefusesMalformedFrames(t *testing.T) {
	t.Parallel()
	good := entry(t, 1, `1`)
	for _, tc := range []struct {
		name    string
		payload string
		before  int // messages handed on before the error
	}{
		{"empty", "", 0},
		{"mark alone", "B", 0},
		{"no length", "B:" + good, 0},
		{"zero length", "B0:" + good, 0},
		{"negative length", "B-3:" + good, 0},
		{"length not a number", "Bx1:" + good, 0},
		{"length past the end", fmt.Sprintf("B%d:%s", len(good)+1, good), 0},
		{"huge length", "B99999999999999999999:" + good, 0},
		{"no colon", "B12", 0},
		{"entry not an envelope", framed("1 e1 {}"), 0},
		{"entry without offset", framed("e1 " + good[2:]), 0},
		{"good then bad", framed(good) + "3:abc", 1},
		{"good then truncated", framed(good) + "40:abc", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := relayed(tc.payload)
			if !errors.Is(err, errEnvelope) {
				t.Fatalf("%q: error %v, want errEnvelope", tc.payload, err)
			}
			if len(got) != tc.before {
				t.Fatalf("%q: %d messages handed on before the error, want %d", tc.payload, len(got), tc.before)
			}
		})
	}
}

// Bodies in the written layout are read in place, escaped strings and
// earlier layouts with encoding/json; both agree.
func TestDecodeBodyPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		body     string
		inPlace  bool
		wantData string
	}{
		{"written layout", `{"id":"i","topic":"a.b","time":5,"data":{"x":[1,"}"]}}`, true, `{"x":[1,"}"]}`},
		{"with trace", `{"id":"i","topic":"a.b","time":-5,"trace":{"baggage":"k=v","traceparent":"tp"},"data":"s"}`, true, `"s"`},
		{"empty trace", `{"id":"i","topic":"a.b","time":5,"trace":{},"data":null}`, true, `null`},
		{"scalar data", `{"id":"i","topic":"a.b","time":5,"data":12.5e3}`, true, `12.5e3`},
		{"escaped id", `{"id":"i\"d","topic":"a.b","time":5,"data":1}`, false, `1`},
		{"escaped trace", `{"id":"i","topic":"a.b","time":5,"trace":{"tp":"\u00e9"},"data":1}`, false, `1`},
		{"data before trace", `{"id":"i","topic":"a.b","time":5,"data":{"s":1},"trace":{"tp":"x"}}`, false, `{"s":1}`},
		{"scalar data before trace", `{"id":"i","topic":"a.b","time":5,"data":1,"trace":{"tp":"x"}}`, false, `1`},
		{"whitespace", `{"id": "i","topic":"a.b","time":5,"data":1}`, false, `1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inPlace := decodeLayout(tc.body, new(broker.Message))
			if inPlace != tc.inPlace {
				t.Fatalf("read in place: %v, want %v", inPlace, tc.inPlace)
			}
			got, err := decodeBody(tc.body, 3, "e")
			if err != nil {
				t.Fatal(err)
			}
			want, err := decodeBodyJSON(tc.body, 3, "e")
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Data) != tc.wantData || !sameMessage(got, want) {
				t.Fatalf("decoded %+v, encoding/json reads %+v", got, want)
			}
		})
	}
}

func TestDecodeBodyRefusesWhatJSONRefuses(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		``, `{}`, `{"id":"","topic":"a","time":1,"data":1}`, `{"id":"i","topic":"","time":1,"data":1}`,
		`{"id":"i","topic":"a","time":1,"data":}`, `{"id":"i","topic":"a","time":1}`,
		`{"id":"i","topic":"a","time":x,"data":1}`, `{"id":"i","topic":"a","time":1,"data":{"a":1}`,
		`{"id":"i","topic":"a","time":1,"data":"open}`, `{"id":"i","topic":"a","time":1,"trace":{"a":1},"data":1}`,
	} {
		if m, err := decodeBody(body, 1, "e"); err == nil {
			t.Errorf("%q decoded as %+v, want an error", body, m)
		}
	}
}

// The in-place read shares the payload's bytes and allocates the message
// alone; a batch allocates its messages at once.
func TestDecodeBodyDoesNotCopyData(t *testing.T) {
	body := `{"id":"i","topic":"a.b","time":5,"data":{"bid":1.08,"ask":1.09}}`
	m, err := decodeBody(body, 1, "e")
	if err != nil {
		t.Fatal(err)
	}
	start := uintptr(unsafe.Pointer(unsafe.StringData(body)))
	if p := uintptr(unsafe.Pointer(&m.Data[0])); p < start || p >= start+uintptr(len(body)) {
		t.Fatal("data was copied out of the payload")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = decodeBody(body, 1, "e") }); n != 1 {
		t.Fatalf("%v allocations per decode, want 1 (the message)", n)
	}
	// The messages of a relayed batch are allocated together.
	var list []string
	for i := 1; i <= 50; i++ {
		list = append(list, fmt.Sprintf("%d e %s", i, body))
	}
	batch := framed(list...)
	count := 0
	each := func(*broker.Message) { count++ }
	if n := testing.AllocsPerRun(100, func() { _ = decodeRelayed(batch, each) }); n != 1 {
		t.Fatalf("%v allocations per relayed batch of 50, want 1", n)
	}
	if count != 50*101 {
		t.Fatalf("%d messages handed on, want 50 per decode", count)
	}
}

func sameMessage(a, b *broker.Message) bool {
	if a.ID != b.ID || a.Topic != b.Topic || !a.Time.Equal(b.Time) || a.Offset != b.Offset || a.Epoch != b.Epoch ||
		string(a.Data) != string(b.Data) || len(a.Trace) != len(b.Trace) {
		return false
	}
	for k, v := range a.Trace {
		if b.Trace[k] != v {
			return false
		}
	}
	return true
}

// BenchmarkDecodeRelayed measures the receiving side of the relay: one
// message alone, and a batch of 50 on one topic.
func BenchmarkDecodeRelayed(b *testing.B) {
	t := &testing.T{}
	one := entry(t, 1, `{"bid":1.08,"ask":1.09,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	var entries []string
	for i := 1; i <= 50; i++ {
		entries = append(entries, entry(t, i, `{"bid":1.08,"ask":1.09,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`))
	}
	batch := framed(entries...)
	for _, bc := range []struct {
		name string
		p    string
		n    int
	}{{"one", one, 1}, {"batch-50", batch, 50}} {
		b.Run(bc.name+"/in-place", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := decodeRelayed(bc.p, func(*broker.Message) {}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bc.n), "ns/msg")
		})
	}
	b.Run("one/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		_, _, _ = strings.Cut(one, " ")
		body := one[strings.Index(one, "{"):]
		for b.Loop() {
			if _, err := decodeBodyJSON(body, 1, "e1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
