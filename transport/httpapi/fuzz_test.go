package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/google/uuid"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/transport/httpapi"
)

// FuzzPublishBody posts arbitrary bodies to /v1/publish (batch false) and
// /v1/publish/batch (batch true). Whatever the body: no panic, no 5xx, a
// JSON answer; a 200 publishes and delivers exactly the messages it
// reports, each with an offset; any other status publishes and delivers
// nothing.
func FuzzPublishBody(f *testing.F) {
	const maxBody, maxBatch = 1 << 14, 16
	for _, seed := range []struct {
		body  string
		batch bool
	}{
		{`{"topic":"a.b","data":{"x":1}}`, false},
		{`{"topic":"a","data":null}`, false},
		{`{"topic":"a.b","data":{"a" :  [1, 2 ]}}`, false},
		{`{"topic":"a.*","data":1}`, false},
		{`{"topic":"a.b"}`, false},
		{`{"topic":"a.b","data":1,"x":2}`, false},
		{`{"topic":"a.b","data":1}{}`, false},
		{`{"topic":"a.b","data":[1,2`, false},
		{"{\"topic\":\"a.b\",\"data\":\"\xff\"}", false},
		{strings.Repeat("[", 20000), false},
		{`{"topic":"` + strings.Repeat("x", 300) + `","data":1}`, false},
		{``, false},
		{`null`, false},
		{`{"messages":[{"topic":"a.b","data":1},{"topic":"c","data":"s"}]}`, true},
		{`{"messages":[{"topic":"a.b","data":1},{"topic":"a..b","data":2}]}`, true},
		{`{"messages":[]}`, true},
		{`{"messages":null}`, true},
		{`{"messages":[null]}`, true},
		{`{"messages":[` + strings.TrimSuffix(strings.Repeat(`{"topic":"m","data":0},`, maxBatch+1), ",") + `]}`, true},
		{`{"topic":"a.b","data":1}`, true},
	} {
		f.Add([]byte(seed.body), seed.batch)
	}

	e := newEnv(f, httpapi.Config{MaxBodySize: maxBody, MaxBatch: maxBatch})
	// A subscriber to every topic: each published message is delivered to
	// it exactly once.
	sess := e.b.NewSession()
	f.Cleanup(sess.Close)
	if err := sess.Subscribe(context.Background(), "", ">", nil); err != nil {
		f.Fatal(err)
	}
	sess.Outbox().Drain(nil) // the subscribed answer

	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		path := "/v1/publish"
		if batch {
			path = "/v1/publish/batch"
		}
		before := e.b.Stats()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Content-Type", "application/json")
		r := e.serve(req)
		after := e.b.Stats()
		// A delivery through a pattern is queued in parts: count frames.
		parts, overflowed := sess.Outbox().Drain(nil)
		if overflowed {
			t.Fatal("the test subscriber overflowed")
		}
		delivered := countFrames(t, parts)
		published := after.Published - before.Published

		if r.status >= 500 || (r.status != http.StatusOK && r.status < 400) {
			t.Fatalf("status %d for body %q: %s", r.status, body, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" || !json.Valid(r.body) {
			t.Fatalf("status %d with Content-Type %q and body %q: want JSON", r.status, ct, r.body)
		}
		if r.status != http.StatusOK {
			if err := checkError(r, r.status, codeOf(r.status)); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if published != 0 || delivered != 0 {
				t.Fatalf("status %d, yet %d published and %d delivered", r.status, published, delivered)
			}
			return
		}

		var results []result
		if batch {
			var res struct {
				Results []result `json:"results"`
			}
			if err := decodeExact(r.body, &res); err != nil {
				t.Fatalf("200 body %s: %v", r.body, err)
			}
			results = res.Results
			if len(results) == 0 || len(results) > maxBatch {
				t.Fatalf("200 with %d results", len(results))
			}
		} else {
			var res result
			if err := decodeExact(r.body, &res); err != nil {
				t.Fatalf("200 body %s: %v", r.body, err)
			}
			results = []result{res}
		}
		for _, res := range results {
			if res.Offset == 0 {
				t.Fatalf("200 with offset 0: %s", r.body)
			}
			if _, err := uuid.Parse(res.ID); err != nil || res.Epoch != testkit.EpochOf(t, e.store, res.Topic) || res.Topic == "" {
				t.Fatalf("200 with a bad result %+v", res)
			}
		}
		if published != uint64(len(results)) || delivered != len(results) {
			t.Fatalf("200 with %d results, yet %d published and %d delivered", len(results), published, delivered)
		}
	})
}

// countFrames returns how many WebSocket frames parts hold, read in
// order as the writer sends them: a delivery through a pattern is queued
// as three parts of one frame. Each must be a whole final text frame.
func countFrames(t *testing.T, parts [][]byte) int {
	t.Helper()
	r := bytes.NewReader(bytes.Join(parts, nil))
	n := 0
	for r.Len() > 0 {
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("frame %d of the queued parts: %v", n+1, err)
		}
		if !h.Fin || h.OpCode != ws.OpText || h.Masked || h.Length > int64(r.Len()) {
			t.Fatalf("frame %d of the queued parts: %+v with %d bytes left, want a whole final text frame", n+1, h, r.Len())
		}
		if _, err := r.Seek(h.Length, io.SeekCurrent); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// codeOf is the error code that goes with a status.
func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusTooManyRequests:
		return "rate_limited"
	default:
		return "unavailable"
	}
}
