package hooks_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/hooks"
)

// BenchmarkCall: one subscribe call to a backend on loopback that
// answers allow, over a kept-alive connection. The figures include the
// test backend's own work (it runs in the same process).
func BenchmarkCall(b *testing.B) {
	be := newBackend(b, allow)
	h := newHooks(b, allHooks(be))
	benchSubscribeCalls(b, h)
}

// benchSubscribeCalls makes one subscribe call through h per iteration,
// one at a time.
func benchSubscribeCalls(b *testing.B, h *hooks.Hooks) {
	req := hooks.Request{Session: "0b5c6f0e-4c1f-4a55-9d0e-6f6c2a9b7e1d", User: "u1", Remote: "203.0.113.9",
		Info: json.RawMessage(`{"name":"Ann"}`), Topic: "chat.room-1"}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Call(ctx, hooks.Subscribe, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallParallel: calls from every core at once, within the
// default MaxConcurrent.
func BenchmarkCallParallel(b *testing.B) {
	be := newBackend(b, allow)
	h := newHooks(b, allHooks(be))
	req := hooks.Request{Session: "s", User: "u1", Topic: "chat.room-1", Data: json.RawMessage(`{"text":"hi"}`)}
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Call(ctx, hooks.Publish, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// canned answers every request with {"allow": true}, with no network.
type canned struct{}

func (canned) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	const body = `{"allow": true}`
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}, nil
}

// BenchmarkCallOverhead: the package's own cost per call (encoding,
// deadline, slot, request, decoding, metrics), with an HTTP client whose
// transport answers at once.
func BenchmarkCallOverhead(b *testing.B) {
	h := newHooks(b, hooks.Config{Subscribe: "http://backend.invalid/subscribe", HTTPClient: &http.Client{Transport: canned{}}})
	benchSubscribeCalls(b, h)
}
