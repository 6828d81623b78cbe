package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/transport/httpapi"
)

// A retried publish with the same key, given as the Idempotency-Key header
// or as idempotency_key, answers exactly as the first and delivers once.
func TestIdempotentPublishAnswersTheSameAndDeliversOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	sub := e.dial(t)
	sub.Subscribe("idem.a")

	first := e.post(t, "/v1/publish", `{"topic":"idem.a","data":{"n":1}}`, "Idempotency-Key", "order-1")
	want := wantResult(t, first)
	for _, retry := range []reply{
		e.post(t, "/v1/publish", `{"topic":"idem.a","data":{"n":1}}`, "Idempotency-Key", "order-1"),
		e.post(t, "/v1/publish", `{"topic":"idem.a","data":{"n":1},"idempotency_key":"order-1"}`),
		e.post(t, "/v1/publish", `{"topic":"idem.a","data":{"n":1},"idempotency_key":"order-1"}`, "Idempotency-Key", "order-1"),
	} {
		if string(retry.body) != string(first.body) {
			t.Fatalf("retry answered %s, want exactly %s", retry.body, first.body)
		}
	}
	batch := wantResults(t, e.post(t, "/v1/publish/batch",
		`{"messages":[{"topic":"idem.a","data":{"n":1},"idempotency_key":"order-1"},{"topic":"idem.a","data":{"n":2},"idempotency_key":"order-2"}]}`))
	if batch[0] != want || batch[1].Offset != want.Offset+1 {
		t.Fatalf("batch answered %+v, want the first publish's %+v then offset %d", batch, want, want.Offset+1)
	}
	// The same key over WebSocket answers the first publish too.
	pub := e.dial(t)
	for range 2 {
		pub.Send(map[string]any{"op": "publish", "topic": "idem.a", "data": map[string]int{"n": 1}, "idempotency_key": "order-1", "ref": "w"})
		if f := pub.Expect("published"); f.ID != want.ID || f.Offset != want.Offset || f.Epoch != want.Epoch {
			t.Fatalf("WebSocket retry answered %s, want the first publish's %+v", f.Raw, want)
		}
	}
	for _, off := range []uint64{1, 2} {
		if f := sub.Expect("message"); f.Offset != off {
			t.Fatalf("message at offset %d, want %d: a retry was delivered", f.Offset, off)
		}
	}
	sub.Send(map[string]any{"op": "ping", "ref": "p"})
	if f := sub.Next(); f.Type != "pong" {
		t.Fatalf("got %s after the two messages, want pong: a retry was delivered", f.Raw)
	}
}

// Keys are checked: a header that differs from the body's key, or a key
// that is too long or not printable ASCII, is refused and publishes
// nothing.
func TestBadIdempotencyKeysAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	for _, tc := range []struct {
		name, path, body string
		header           []string
	}{
		{"header and body differ", "/v1/publish", `{"topic":"k.a","data":1,"idempotency_key":"a"}`, []string{"Idempotency-Key", "b"}},
		{"too long", "/v1/publish", `{"topic":"k.a","data":1,"idempotency_key":"` + strings.Repeat("k", broker.MaxIdempotencyKeyLen+1) + `"}`, nil},
		{"space", "/v1/publish", `{"topic":"k.a","data":1,"idempotency_key":"a b"}`, nil},
		{"non-ASCII header", "/v1/publish", `{"topic":"k.a","data":1}`, []string{"Idempotency-Key", "clé"}},
		{"control character", "/v1/publish", `{"topic":"k.a","data":1,"idempotency_key":"a\u0007"}`, nil},
		{"wrong type", "/v1/publish", `{"topic":"k.a","data":1,"idempotency_key":7}`, nil},
		{"bad key in a batch", "/v1/publish/batch", `{"messages":[{"topic":"k.a","data":1},{"topic":"k.a","data":2,"idempotency_key":"x y"}]}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.post(t, tc.path, tc.body, tc.header...), http.StatusBadRequest, protocol.CodeBadRequest)
		})
	}
	pos, err := e.store.Position(t.Context(), "k.a")
	if err != nil || pos.Offset != 0 {
		t.Fatalf("k.a is at %+v (%v) after refused publishes, want offset 0", pos, err)
	}
}

// A store failure reaches the publisher as a code and a fixed message;
// its detail stays in the log.
func TestStoreErrorsAreNotSentToClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	c := e.dial(t)
	_ = e.store.Close()
	for _, r := range []reply{
		e.post(t, "/v1/publish", `{"topic":"down.a","data":1}`),
		e.post(t, "/v1/publish/batch", `{"messages":[{"topic":"down.a","data":1}]}`),
	} {
		var eb errorBody
		if err := checkError(r, http.StatusServiceUnavailable, protocol.CodeUnavailable); err != nil {
			t.Fatal(err)
		}
		if err := decodeExact(r.body, &eb); err != nil || eb.Error.Message != "store unavailable" {
			t.Fatalf("error message %q, want the fixed %q", eb.Error.Message, "store unavailable")
		}
	}
	c.Send(map[string]any{"op": "subscribe", "topic": "down.b", "ref": "s"})
	c.Send(map[string]any{"op": "publish", "topic": "down.b", "data": 1, "ref": "p"})
	for range 2 {
		if f := c.Expect("error"); f.Code != protocol.CodeUnavailable || f.Message != "store unavailable" {
			t.Fatalf("error frame %s, want code unavailable with the fixed message", f.Raw)
		}
	}
}
