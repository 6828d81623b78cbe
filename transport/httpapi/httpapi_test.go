package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/transport/httpapi"
)

func TestPublishOK(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	for i := uint64(1); i <= 3; i++ {
		res := wantResult(t, e.post(t, "/v1/publish", `{"topic":"ok.a","data":{"n":1}}`))
		if _, err := uuid.Parse(res.ID); err != nil {
			t.Errorf("id %q is not a UUID: %v", res.ID, err)
		}
		if res.Topic != "ok.a" || res.Offset != i || res.Epoch != testkit.EpochOf(t, e.store, "ok.a") {
			t.Errorf("reply %+v, want topic ok.a, offset %d, epoch %s", res, i, testkit.EpochOf(t, e.store, "ok.a"))
		}
	}
	// Another topic has its own sequence.
	if res := wantResult(t, e.post(t, "/v1/publish", `{"topic":"ok.b","data":null}`)); res.Offset != 1 {
		t.Errorf("first message of ok.b has offset %d, want 1", res.Offset)
	}
}

// TestPublishStatuses sends each kind of bad request to a node with no API
// key (the test server's client is on loopback) and checks the status and
// the JSON error body.
func TestPublishStatuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	const ok = `{"topic":"st.a","data":1}`
	deep := strings.Repeat("[", 100000)
	tests := []struct {
		name   string
		method string
		path   string
		ctype  string // "-" for none
		body   string
		status int
		code   string
	}{
		{"bad JSON", "POST", "/v1/publish", "application/json", `{"topic" "st.a", "data": 1}`, 400, "bad_request"},
		{"not JSON at all", "POST", "/v1/publish", "application/json", `topic=st.a`, 400, "bad_request"},
		{"truncated", "POST", "/v1/publish", "application/json", `{"topic":"st.a","data":[1,2`, 400, "bad_request"},
		{"truncated string", "POST", "/v1/publish", "application/json", `{"topic":"st.a","data":"ab`, 400, "bad_request"},
		{"empty body", "POST", "/v1/publish", "application/json", ``, 400, "bad_request"},
		{"only whitespace", "POST", "/v1/publish", "application/json", " \n\t ", 400, "bad_request"},
		{"non-UTF-8", "POST", "/v1/publish", "application/json", "{\"topic\":\"st.a\",\"data\":\"\xff\xfe\"}", 400, "bad_request"},
		{"non-UTF-8 outside strings", "POST", "/v1/publish", "application/json", "{\"topic\":\"st.a\",\"data\":1}\xc0", 400, "bad_request"},
		{"deeply nested body", "POST", "/v1/publish", "application/json", deep, 400, "bad_request"},
		{"deeply nested data", "POST", "/v1/publish", "application/json", `{"topic":"st.a","data":` + deep + strings.Repeat("]", 100000) + `}`, 400, "bad_request"},
		{"deeply nested batch", "POST", "/v1/publish/batch", "application/json", `{"messages":` + deep, 400, "bad_request"},
		{"bad topic", "POST", "/v1/publish", "application/json", `{"topic":"st..a","data":1}`, 400, "bad_request"},
		{"empty topic", "POST", "/v1/publish", "application/json", `{"topic":"","data":1}`, 400, "bad_request"},
		{"topic with space", "POST", "/v1/publish", "application/json", `{"topic":"st a","data":1}`, 400, "bad_request"},
		{"topic too long", "POST", "/v1/publish", "application/json", `{"topic":"` + strings.Repeat("t", 256) + `","data":1}`, 400, "bad_request"},
		{"wildcard topic *", "POST", "/v1/publish", "application/json", `{"topic":"st.*","data":1}`, 400, "bad_request"},
		{"wildcard topic >", "POST", "/v1/publish", "application/json", `{"topic":"st.>","data":1}`, 400, "bad_request"},
		{"missing data", "POST", "/v1/publish", "application/json", `{"topic":"st.a"}`, 400, "bad_request"},
		{"missing topic", "POST", "/v1/publish", "application/json", `{"data":1}`, 400, "bad_request"},
		{"unknown field", "POST", "/v1/publish", "application/json", `{"topic":"st.a","data":1,"ttl":5}`, 400, "bad_request"},
		{"trailing value", "POST", "/v1/publish", "application/json", ok + ` {}`, 400, "bad_request"},
		{"trailing garbage", "POST", "/v1/publish", "application/json", ok + `x`, 400, "bad_request"},
		{"topic of wrong type", "POST", "/v1/publish", "application/json", `{"topic":42,"data":1}`, 400, "bad_request"},
		{"topic as array", "POST", "/v1/publish", "application/json", `{"topic":["st.a"],"data":1}`, 400, "bad_request"},
		{"body is an array", "POST", "/v1/publish", "application/json", `[` + ok + `]`, 400, "bad_request"},
		{"body is a string", "POST", "/v1/publish", "application/json", `"st.a"`, 400, "bad_request"},
		{"body is null", "POST", "/v1/publish", "application/json", `null`, 400, "bad_request"},
		{"batch of wrong type", "POST", "/v1/publish/batch", "application/json", `{"messages":{"topic":"st.a","data":1}}`, 400, "bad_request"},
		{"batch entry of wrong type", "POST", "/v1/publish/batch", "application/json", `{"messages":["st.a"]}`, 400, "bad_request"},
		{"batch empty", "POST", "/v1/publish/batch", "application/json", `{"messages":[]}`, 400, "bad_request"},
		{"batch null", "POST", "/v1/publish/batch", "application/json", `{"messages":null}`, 400, "bad_request"},
		{"batch without messages", "POST", "/v1/publish/batch", "application/json", `{}`, 400, "bad_request"},
		{"batch unknown field", "POST", "/v1/publish/batch", "application/json", `{"messages":[` + ok + `],"atomic":true}`, 400, "bad_request"},
		{"batch entry unknown field", "POST", "/v1/publish/batch", "application/json", `{"messages":[{"topic":"st.a","data":1,"x":0}]}`, 400, "bad_request"},
		{"batch trailing data", "POST", "/v1/publish/batch", "application/json", `{"messages":[` + ok + `]}]`, 400, "bad_request"},
		{"batch entry null", "POST", "/v1/publish/batch", "application/json", `{"messages":[null]}`, 400, "bad_request"},

		{"no content type", "POST", "/v1/publish", "-", ok, 415, "unsupported_media_type"},
		{"text/plain", "POST", "/v1/publish", "text/plain", ok, 415, "unsupported_media_type"},
		{"form", "POST", "/v1/publish", "application/x-www-form-urlencoded", ok, 415, "unsupported_media_type"},
		{"json suffix type", "POST", "/v1/publish", "application/merge-patch+json", ok, 415, "unsupported_media_type"},
		{"malformed content type", "POST", "/v1/publish", "application/json;;", ok, 415, "unsupported_media_type"},
		{"batch text/plain", "POST", "/v1/publish/batch", "text/plain", `{"messages":[` + ok + `]}`, 415, "unsupported_media_type"},

		{"GET publish", "GET", "/v1/publish", "-", "", 405, "method_not_allowed"},
		{"PUT publish", "PUT", "/v1/publish", "application/json", ok, 405, "method_not_allowed"},
		{"DELETE batch", "DELETE", "/v1/publish/batch", "-", "", 405, "method_not_allowed"},
		{"GET batch", "GET", "/v1/publish/batch", "-", "", 405, "method_not_allowed"},

		{"unknown route", "GET", "/v1/nothing", "-", "", 404, "not_found"},
		{"root", "GET", "/", "-", "", 404, "not_found"},
		{"publish with a trailing slash", "POST", "/v1/publish/", "application/json", ok, 404, "not_found"},
		{"publish under another version", "POST", "/v2/publish", "application/json", ok, 404, "not_found"},
		{"batch prefix", "POST", "/v1/publish/batchx", "application/json", ok, 404, "not_found"},
	}
	// Runs after every parallel subtest below.
	t.Cleanup(func() {
		if st := e.b.Stats(); st.Published != 0 {
			t.Errorf("%d messages published by rejected requests", st.Published)
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var header []string
			if tc.ctype != "-" {
				header = []string{"Content-Type", tc.ctype}
			}
			r := e.do(t, tc.method, tc.path, strings.NewReader(tc.body), header...)
			wantError(t, r, tc.status, tc.code)
			if tc.status == http.StatusMethodNotAllowed && r.header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow %q, want POST", r.header.Get("Allow"))
			}
		})
	}
}

// TestPublishAccepts lists requests that are valid although unusual.
func TestPublishAccepts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	tests := []struct {
		name, ctype, body string
	}{
		{"charset", "application/json; charset=utf-8", `{"topic":"acc.a","data":1}`},
		{"upper case type", "Application/JSON", `{"topic":"acc.a","data":1}`},
		{"whitespace around", "application/json", " \n{\"topic\":\"acc.a\",\"data\":1}\n\t "},
		{"data null", "application/json", `{"topic":"acc.a","data":null}`},
		{"data a string", "application/json", `{"topic":"acc.a","data":"x"}`},
		{"data nested 1000 deep", "application/json", `{"topic":"acc.a","data":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`},
		{"fields reordered", "application/json", `{"data":{"k":[1]},"topic":"acc.a"}`},
		{"topic of 255 bytes", "application/json", `{"topic":"` + strings.Repeat("t", 255) + `","data":1}`},
		{"topic with every class", "application/json", `{"topic":"Az09_:-.x","data":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := wantResult(t, e.do(t, "POST", "/v1/publish", strings.NewReader(tc.body), "Content-Type", tc.ctype))
			if res.Offset == 0 {
				t.Errorf("offset 0 in %+v", res)
			}
		})
	}
}

// TestBodySize checks that the body limit is inclusive and applies to the
// whole body, with and without a Content-Length.
func TestBodySize(t *testing.T) {
	t.Parallel()
	const limit = 256
	e := newEnv(t, httpapi.Config{MaxBodySize: limit})
	// bodyOf returns a valid single publish body of exactly n bytes.
	bodyOf := func(n int) string {
		head, tail := `{"topic":"size.a","data":"`, `"}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	batchOf := func(n int) string {
		head, tail := `{"messages":[{"topic":"size.a","data":"`, `"}]}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	if len(bodyOf(limit)) != limit {
		t.Fatal("bodyOf is wrong")
	}
	// chunked hides the length from net/http, so the body is sent chunked.
	chunked := func(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) }

	wantResult(t, e.post(t, "/v1/publish", bodyOf(limit)))
	wantResult(t, e.do(t, "POST", "/v1/publish", chunked(bodyOf(limit)), "Content-Type", "application/json"))
	wantResults(t, e.post(t, "/v1/publish/batch", batchOf(limit)))
	before := e.b.Stats().Published

	wantError(t, e.post(t, "/v1/publish", bodyOf(limit+1)), http.StatusRequestEntityTooLarge, "too_large")
	wantError(t, e.do(t, "POST", "/v1/publish", chunked(bodyOf(limit+1)), "Content-Type", "application/json"), http.StatusRequestEntityTooLarge, "too_large")
	wantError(t, e.post(t, "/v1/publish/batch", batchOf(limit+1)), http.StatusRequestEntityTooLarge, "too_large")
	wantError(t, e.post(t, "/v1/publish", bodyOf(1<<20)), http.StatusRequestEntityTooLarge, "too_large")
	// Over the limit is 413 even when the body is not valid JSON.
	wantError(t, e.post(t, "/v1/publish", strings.Repeat("[", limit+1)), http.StatusRequestEntityTooLarge, "too_large")
	if after := e.b.Stats().Published; after != before {
		t.Errorf("%d messages published by oversized requests", after-before)
	}
}

// TestBodyReadError: a body that breaks off is a bad request.
func TestBodyReadError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	body := io.MultiReader(strings.NewReader(`{"topic":"cut.a","da`), iotestErrReader{io.ErrUnexpectedEOF})
	req := httptest.NewRequest(http.MethodPost, "/v1/publish", body)
	req.RemoteAddr = "127.0.0.1:50000"
	req.Header.Set("Content-Type", "application/json")
	wantError(t, e.serve(req), http.StatusBadRequest, "bad_request")
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	keys := []string{"first-key-0001", "second-key-0002"}
	e := newEnv(t, httpapi.Config{APIKeys: []auth.APIKey{{Name: "first", Secret: keys[0]}, {Name: "second", Secret: keys[1]}}})
	const body = `{"topic":"auth.a","data":1}`
	tests := []struct {
		name   string
		auth   string // "-" for no header
		status int
	}{
		{"no header", "-", 401},
		{"empty header", "", 401},
		{"wrong key", "Bearer not-a-key-000", 401},
		{"wrong scheme", "Basic " + keys[0], 401},
		{"no scheme", keys[0], 401},
		{"scheme only", "Bearer", 401},
		{"empty key", "Bearer ", 401},
		{"prefix of a key", "Bearer " + keys[0][:len(keys[0])-1], 401},
		{"key and more", "Bearer " + keys[0] + "x", 401},
		{"two keys", "Bearer " + keys[0] + "," + keys[1], 401},
		{"key of other case", "Bearer " + strings.ToUpper(keys[0]), 401},
		{"first key", "Bearer " + keys[0], 200},
		{"second key", "Bearer " + keys[1], 200},
		{"scheme in lower case", "bearer " + keys[1], 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			header := []string{}
			if tc.auth != "-" {
				header = []string{"Authorization", tc.auth}
			}
			for _, path := range []string{"/v1/publish", "/v1/publish/batch"} {
				b := body
				if path == "/v1/publish/batch" {
					b = `{"messages":[` + body + `]}`
				}
				r := e.post(t, path, b, header...)
				if tc.status == 200 {
					if r.status != 200 {
						t.Errorf("%s: status %d, body %s; want 200", path, r.status, r.body)
					}
					continue
				}
				wantError(t, r, tc.status, "unauthorized")
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: 401 with WWW-Authenticate %q, want the Bearer scheme", path, r.header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// With keys configured, a key is what matters, not where it comes from.
	for _, remote := range []string{"203.0.113.7:4000", "127.0.0.1:4000"} {
		req := httptest.NewRequest(http.MethodPost, "/v1/publish", strings.NewReader(body))
		req.RemoteAddr = remote
		req.Header.Set("Content-Type", "application/json")
		wantError(t, e.serve(req), http.StatusUnauthorized, "unauthorized")
		req = httptest.NewRequest(http.MethodPost, "/v1/publish", strings.NewReader(body))
		req.RemoteAddr = remote
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+keys[0])
		if r := e.serve(req); r.status != http.StatusOK {
			t.Errorf("valid key from %s: status %d, body %s", remote, r.status, r.body)
		}
	}
}

// TestLoopbackOnlyWithoutKeys: with no API key configured, publishing is
// accepted from loopback addresses only.
func TestLoopbackOnlyWithoutKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	tests := []struct {
		remote string
		status int
	}{
		{"127.0.0.1:1234", 200},
		{"127.8.9.10:1234", 200},
		{"[::1]:1234", 200},
		{"203.0.113.5:1234", 403},
		{"10.0.0.1:1234", 403},
		{"[2001:db8::1]:1234", 403},
		{"[::ffff:203.0.113.5]:1234", 403},
		{"not an address", 403},
		{"", 403},
	}
	for _, tc := range tests {
		for _, path := range []string{"/v1/publish", "/v1/publish/batch"} {
			body := `{"topic":"lo.a","data":1}`
			if path == "/v1/publish/batch" {
				body = `{"messages":[` + body + `]}`
			}
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			req.RemoteAddr = tc.remote
			req.Header.Set("Content-Type", "application/json")
			r := e.serve(req)
			if tc.status == 200 {
				if r.status != 200 {
					t.Errorf("%s from %q: status %d, body %s; want 200", path, tc.remote, r.status, r.body)
				}
				continue
			}
			if err := checkError(r, tc.status, "forbidden"); err != nil {
				t.Errorf("%s from %q: %v", path, tc.remote, err)
			}
		}
	}
}

// TestShutdown: after BeginShutdown, /readyz and publishes answer 503 while
// /healthz still answers 200.
func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	r := e.do(t, "GET", "/readyz", nil)
	if r.status != 200 || !json.Valid(r.body) {
		t.Fatalf("/readyz before shutdown: %d %s, want 200 and JSON", r.status, r.body)
	}
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"sd.a","data":1}`))

	e.api.BeginShutdown()

	r = e.do(t, "GET", "/readyz", nil)
	var ready struct{ Status, Reason string }
	if r.status != http.StatusServiceUnavailable || decodeExact(r.body, &ready) != nil || ready.Reason == "" {
		t.Errorf("/readyz after BeginShutdown: %d %s, want 503 with the reason in JSON", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/readyz Content-Type %q", ct)
	}
	if r := e.do(t, "GET", "/healthz", nil); r.status != http.StatusOK || !json.Valid(r.body) {
		t.Errorf("/healthz after BeginShutdown: %d %s, want 200", r.status, r.body)
	}
	before := e.b.Stats().Published
	wantError(t, e.post(t, "/v1/publish", `{"topic":"sd.a","data":1}`), http.StatusServiceUnavailable, "unavailable")
	wantError(t, e.post(t, "/v1/publish/batch", `{"messages":[{"topic":"sd.a","data":1}]}`), http.StatusServiceUnavailable, "unavailable")
	if after := e.b.Stats().Published; after != before {
		t.Errorf("%d messages published after BeginShutdown", after-before)
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	for _, path := range []string{"/healthz", "/readyz"} {
		r := e.do(t, "GET", path, nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" || !json.Valid(r.body) {
			t.Errorf("GET %s: %d %q %s, want 200 and a JSON body", path, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
}

// TestBatch: results come in order, one per message, with consecutive
// offsets per topic; subscribers receive the messages in that order.
func TestBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	c := e.dial(t)
	c.Subscribe("bt.a", "bt.>")

	topics := []string{"bt.a", "bt.b", "bt.a", "bt.a", "bt.b.c", "bt.b"}
	var body bytes.Buffer
	body.WriteString(`{"messages":[`)
	for i, topic := range topics {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"topic":%q,"data":{"i":%d}}`, topic, i)
	}
	body.WriteString(`]}`)
	results := wantResults(t, e.post(t, "/v1/publish/batch", body.String()))
	if len(results) != len(topics) {
		t.Fatalf("%d results for %d messages", len(results), len(topics))
	}
	next := map[string]uint64{}
	ids := map[string]bool{}
	for i, res := range results {
		next[topics[i]]++
		if res.Topic != topics[i] || res.Offset != next[topics[i]] || res.Epoch != testkit.EpochOf(t, e.store, topics[i]) {
			t.Errorf("result %d: %+v, want topic %s offset %d epoch %s", i, res, topics[i], next[topics[i]], testkit.EpochOf(t, e.store, topics[i]))
		}
		if _, err := uuid.Parse(res.ID); err != nil || ids[res.ID] {
			t.Errorf("result %d: id %q is not a fresh UUID", i, res.ID)
		}
		ids[res.ID] = true
	}

	// Expected deliveries, per subscription, in batch order.
	want := map[string][]int{} // "topic|sub" → batch indexes
	for i, topic := range topics {
		if topic == "bt.a" {
			want[topic+"|"] = append(want[topic+"|"], i)
		}
		want[topic+"|bt.>"] = append(want[topic+"|bt.>"], i)
	}
	total := 0
	for _, w := range want {
		total += len(w)
	}
	got := map[string][]int{}
	for range total {
		f := c.Expect("message")
		key := f.Topic + "|" + f.Sub
		i := len(got[key])
		if i >= len(want[key]) {
			t.Fatalf("unexpected delivery %s", f.Raw)
		}
		res := results[want[key][i]]
		if f.ID != res.ID || f.Offset != res.Offset || f.Epoch != res.Epoch || string(f.Data) != fmt.Sprintf(`{"i":%d}`, want[key][i]) {
			t.Errorf("delivery %d on %s: %s, want %+v", i, key, f.Raw, res)
		}
		got[key] = append(got[key], want[key][i])
	}
	// Nothing more: a ping answered now comes right after.
	c.Send(map[string]string{"op": "ping", "ref": "end"})
	if f := c.Next(); f.Type != "pong" {
		t.Errorf("after the batch: %s, want only the pong", f.Raw)
	}
}

func TestBatchLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{MaxBatch: 3})
	batch := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `{"topic":"lim.a","data":1}`
		}
		return `{"messages":[` + strings.Join(parts, ",") + `]}`
	}
	wantError(t, e.post(t, "/v1/publish/batch", batch(4)), http.StatusRequestEntityTooLarge, "too_large")
	wantError(t, e.post(t, "/v1/publish/batch", batch(100)), http.StatusRequestEntityTooLarge, "too_large")
	if n := e.b.Stats().Published; n != 0 {
		t.Fatalf("%d published by over-long batches", n)
	}
	results := wantResults(t, e.post(t, "/v1/publish/batch", batch(3)))
	for i, res := range results {
		if res.Offset != uint64(i+1) {
			t.Errorf("result %d offset %d, want %d: the refused batches used offsets", i, res.Offset, i+1)
		}
	}
}

// TestRejectedPublishUsesNoOffset: a batch with one invalid message is
// rejected whole, delivers nothing and uses no offset.
func TestRejectedPublishUsesNoOffset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	c := e.dial(t)
	c.Subscribe("rj.a", "rj.b", "rj.*")

	rejected := []string{
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"rj.b","data":2},{"topic":"rj..c","data":3}]}`,
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"rj.b"}]}`,
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"rj.*","data":2}]}`,
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"rj.b","data":2,"extra":1}]}`,
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"rj.b","data":2}],"x":1}`,
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"rj.b","data":2}]} trailing`,
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"rj.b","data":[1,}]}`,
		`{"messages":[{"topic":"rj.a","data":1},{"topic":"","data":2}]}`,
	}
	for _, body := range rejected {
		wantError(t, e.post(t, "/v1/publish/batch", body), http.StatusBadRequest, "bad_request")
	}
	wantError(t, e.post(t, "/v1/publish", `{"topic":"rj.a","data":1,"x":1}`), http.StatusBadRequest, "bad_request")
	if st := e.b.Stats(); st.Published != 0 || st.Delivered != 0 {
		t.Fatalf("after rejected publishes: published %d, delivered %d; want 0", st.Published, st.Delivered)
	}

	results := wantResults(t, e.post(t, "/v1/publish/batch", `{"messages":[{"topic":"rj.a","data":"A"},{"topic":"rj.b","data":"B"}]}`))
	if len(results) != 2 || results[0].Offset != 1 || results[1].Offset != 1 {
		t.Fatalf("first accepted batch: %+v, want offset 1 on rj.a and on rj.b", results)
	}
	// Deliveries are queued in publish order, so anything the rejected
	// batches had delivered would come first.
	want := map[string]result{"rj.a|": results[0], "rj.b|": results[1], "rj.a|rj.*": results[0], "rj.b|rj.*": results[1]}
	for range len(want) {
		f := c.Expect("message")
		key := f.Topic + "|" + f.Sub
		res, ok := want[key]
		if !ok || f.ID != res.ID || f.Offset != 1 {
			t.Fatalf("delivery %s, want only the accepted messages (%+v)", f.Raw, results)
		}
		delete(want, key)
	}
	res := wantResult(t, e.post(t, "/v1/publish", `{"topic":"rj.a","data":"C"}`))
	if res.Offset != 2 {
		t.Errorf("next publish on rj.a has offset %d, want 2", res.Offset)
	}
}

// TestDataByteForByte: data reaches subscribers exactly as published,
// insignificant whitespace included.
func TestDataByteForByte(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	c := e.dial(t)
	c.Subscribe("t.x")
	values := []string{
		`{"a" :  [1, 2 ]}`,
		"{\n\t\"k\" : \"v\"\r\n}",
		`"caf\u00e9 \ud83d\ude00 <&> \/"`,
		`"café 😀"`,
		`1.50e+2`,
		`-0`,
		`[ ]`,
		`null`,
		`{"z":1,"a":2,"z":3}`,
		`123456789012345678901234567890`,
	}
	for _, v := range values {
		for _, path := range []string{"/v1/publish", "/v1/publish/batch"} {
			body := `{"topic":"t.x","data":` + v + `}`
			if path == "/v1/publish/batch" {
				body = `{"messages":[` + body + `]}`
			}
			if r := e.post(t, path, body); r.status != http.StatusOK {
				t.Fatalf("%s %s: %d %s", path, body, r.status, r.body)
			}
			f := c.Expect("message")
			if !strings.Contains(string(f.Raw), `"data":`+v) || string(f.Data) != v {
				t.Errorf("%s: published data %q, delivered frame %q", path, v, f.Raw)
			}
		}
	}
}

// TestWebSocketRoute: the API serves the WebSocket endpoint at /v1/ws, and
// an HTTP publish reaches a WebSocket subscriber.
func TestWebSocketRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	c := e.dial(t)
	c.Subscribe("route.a")
	res := wantResult(t, e.post(t, "/v1/publish", `{"topic":"route.a","data":true}`))
	if f := c.Expect("message"); f.ID != res.ID || f.Topic != "route.a" || f.Sub != "" || string(f.Data) != "true" {
		t.Errorf("delivered %s, want %+v", f.Raw, res)
	}
	// A plain POST to the WebSocket route is refused with the API's error shape.
	r := e.do(t, "POST", "/v1/ws", nil)
	wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if r.header.Get("Allow") != http.MethodGet {
		t.Errorf("Allow %q on /v1/ws, want GET", r.header.Get("Allow"))
	}
}

// TestDrain: after BeginShutdown, Drain waits for the publishes admitted
// before it (they complete and publish), while new ones get 503, and
// requests that failed earlier do not hold it.
func TestDrain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{MaxBodySize: 64})
	newReq := func(body io.Reader) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/v1/publish", body)
		req.RemoteAddr = "127.0.0.1:50000"
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	// Requests that fail after admission must not count as in flight.
	wantError(t, e.serve(newReq(strings.NewReader(strings.Repeat(" ", 65)))), http.StatusRequestEntityTooLarge, "too_large")
	wantError(t, e.serve(newReq(strings.NewReader("\xff"))), http.StatusBadRequest, "bad_request")
	wantError(t, e.serve(newReq(io.MultiReader(strings.NewReader("{"), iotestErrReader{io.ErrUnexpectedEOF}))), http.StatusBadRequest, "bad_request")
	wantError(t, e.serve(newReq(strings.NewReader(`{"topic":"dr..a","data":1}`))), http.StatusBadRequest, "bad_request")

	// A publish whose body is still arriving when shutdown begins.
	pr, pw := io.Pipe()
	served := make(chan reply, 1)
	go func() { served <- e.serve(newReq(pr)) }()
	if _, err := pw.Write([]byte(`{"topic":"dr.a",`)); err != nil { // returns once the handler reads
		t.Fatal(err)
	}
	e.api.BeginShutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.api.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a publish in flight: %v, want the context's deadline", err)
	}
	wantError(t, e.serve(newReq(strings.NewReader(`{"topic":"dr.a","data":1}`))), http.StatusServiceUnavailable, "unavailable")

	if _, err := pw.Write([]byte(`"data":1}`)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.api.Drain(ctx); err != nil {
		t.Fatalf("Drain after the publish finished: %v", err)
	}
	r := <-served
	if res := wantResult(t, r); res.Offset != 1 {
		t.Errorf("the publish admitted before shutdown: %+v, want offset 1", res)
	}
	if n := e.b.Stats().Published; n != 1 {
		t.Errorf("%d published, want 1", n)
	}
}

// TestReadyCheck: /readyz follows Config.Ready, with its error as the
// reason, and shutdown wins over it.
func TestReadyCheck(t *testing.T) {
	t.Parallel()
	var down atomic.Value // of string; "" = reachable
	down.Store("")
	e := newEnv(t, httpapi.Config{Ready: func() error {
		if s := down.Load().(string); s != "" {
			return errors.New(s)
		}
		return nil
	}})
	readyz := func() (int, string) {
		r := e.do(t, "GET", "/readyz", nil)
		var body struct{ Status, Reason string }
		if err := decodeExact(r.body, &body); err != nil {
			t.Fatalf("/readyz body %s: %v", r.body, err)
		}
		return r.status, body.Reason
	}
	if status, _ := readyz(); status != http.StatusOK {
		t.Errorf("/readyz with the store reachable: %d, want 200", status)
	}
	down.Store("redis: connection refused")
	if status, reason := readyz(); status != http.StatusServiceUnavailable || reason != "redis: connection refused" {
		t.Errorf("/readyz with the store down: %d %q, want 503 with the check's error", status, reason)
	}
	if r := e.do(t, "GET", "/healthz", nil); r.status != http.StatusOK {
		t.Errorf("/healthz with the store down: %d, want 200", r.status)
	}
	down.Store("")
	if status, _ := readyz(); status != http.StatusOK {
		t.Errorf("/readyz with the store back: %d, want 200", status)
	}
	e.api.BeginShutdown()
	if status, reason := readyz(); status != http.StatusServiceUnavailable || reason != "shutting down" {
		t.Errorf("/readyz after BeginShutdown: %d %q, want 503 shutting down", status, reason)
	}
}

// TestStoreUnavailable: when the store fails, a publish answers 503
// unavailable and nothing is published.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.Config{})
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"su.a","data":1}`))
	_ = e.store.Close()
	wantError(t, e.post(t, "/v1/publish", `{"topic":"su.a","data":2}`), http.StatusServiceUnavailable, "unavailable")
	wantError(t, e.post(t, "/v1/publish/batch", `{"messages":[{"topic":"su.b","data":2}]}`), http.StatusServiceUnavailable, "unavailable")
	if n := e.b.Stats().Published; n != 1 {
		t.Errorf("%d published, want only the first", n)
	}
}
