package client_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/client"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/transport/httpapi"
)

// history returns topic's stored messages, read through the server API.
func history(t *testing.T, c *client.Client, topic string) []client.Delivery {
	t.Helper()
	h, err := c.History(ctxT(t), topic, client.HistoryOptions{Limit: 1000})
	if err != nil {
		t.Fatalf("History(%s): %v", topic, err)
	}
	return h.Messages
}

// canonical is the JSON value p compacted and HTML-escaped, as
// encoding/json writes a json.RawMessage.
func canonical(t *testing.T, p []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, p); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	var out bytes.Buffer
	json.HTMLEscape(&out, b.Bytes())
	return out.String()
}

// Publish stores the message and answers its position; raw JSON reaches
// the broker byte for byte, other values through json.Marshal without
// HTML escaping; data that is not JSON is refused before any request.
func TestPublish(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	ctx := ctxT(t)

	sub := subscribe(t, c, []string{"pub.a"}, client.SubscribeOptions{})

	p1, err := c.Publish(ctx, "pub.a", map[string]any{"status": "paid", "html": "<b>&</b>"})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Topic != "pub.a" || p1.Offset != 1 || p1.Epoch == "" || p1.ID == "" {
		t.Fatalf("first publish answered %+v", p1)
	}
	raw := json.RawMessage("{ \"n\" : 1e400,\n \"s\": \"\\u2028<>\" }")
	p2, err := c.Publish(ctx, "pub.a", raw)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := c.Publish(ctx, "pub.a", []byte(`[1,  2]`))
	if err != nil {
		t.Fatal(err)
	}
	p4, err := c.Publish(ctx, "pub.a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Offset != 2 || p3.Offset != 3 || p4.Offset != 4 || p2.Epoch != p1.Epoch {
		t.Fatalf("offsets %d %d %d in %s, want 2 3 4 in %s", p2.Offset, p3.Offset, p4.Offset, p2.Epoch, p1.Epoch)
	}
	want := []string{`{"html":"<b>&</b>","status":"paid"}`, string(raw), `[1,  2]`, `null`}
	// Subscribers get the data byte for byte.
	for i, w := range want {
		d := next(t, sub)
		if string(d.Data) != w || d.Offset != uint64(i+1) || d.Topic != "pub.a" || d.Sub != "" {
			t.Errorf("delivery %d: %s %d %s, want pub.a %d %s", i, d.Topic, d.Offset, d.Data, i+1, w)
		}
	}
	// History has them too (GET /v1/history re-encodes data: compare
	// the JSON values).
	msgs := history(t, c, "pub.a")
	if len(msgs) != len(want) {
		t.Fatalf("history holds %d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if canonical(t, m.Data) != canonical(t, []byte(want[i])) || m.Offset != uint64(i+1) {
			t.Errorf("history message %d: offset %d data %s, want %d %s", i, m.Offset, m.Data, i+1, want[i])
		}
	}
	if msgs[0].ID != p1.ID || msgs[0].Time.IsZero() {
		t.Errorf("history message %+v, want id %s and a time", msgs[0], p1.ID)
	}

	for _, bad := range []any{json.RawMessage(`{"a":`), []byte("not json"), func() {}} {
		_, err := c.Publish(ctx, "pub.a", bad)
		var e *client.Error
		if !errors.As(err, &e) || e.Code != protocol.CodeBadRequest || e.Status != 0 {
			t.Errorf("Publish(%T) = %v, want a client-side bad_request", bad, err)
		}
	}
	if got := len(history(t, c, "pub.a")); got != 4 {
		t.Errorf("history holds %d messages after refused data, want 4", got)
	}
}

// PublishBatch answers one result per message in order, stored in one
// step.
func TestPublishBatch(t *testing.T) {
	n := startNode(t, nodeConfig{})
	c := newClient(t, n.URL, client.Config{})
	ctx := ctxT(t)
	res, err := c.PublishBatch(ctx, []client.Message{
		{Topic: "batch.a", Data: 1},
		{Topic: "batch.b", Data: json.RawMessage(` "x" `)},
		{Topic: "batch.a", Data: map[string]int{"n": 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		topic  string
		offset uint64
	}{{"batch.a", 1}, {"batch.b", 1}, {"batch.a", 2}}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d", len(res), len(want))
	}
	for i, r := range res {
		if r.Topic != want[i].topic || r.Offset != want[i].offset || r.ID == "" || r.Epoch == "" {
			t.Errorf("result %d = %+v, want %s at %d", i, r, want[i].topic, want[i].offset)
		}
	}
	if a, b := history(t, c, "batch.a"), history(t, c, "batch.b"); len(a) != 2 || len(b) != 1 || string(a[1].Data) != `{"n":3}` {
		t.Errorf("history: batch.a %d messages, batch.b %d; want 2 and 1", len(a), len(b))
	}

	// A batch with one invalid message is refused whole.
	_, err = c.PublishBatch(ctx, []client.Message{{Topic: "batch.a", Data: 4}, {Topic: "batch..bad", Data: 5}})
	if !client.IsCode(err, protocol.CodeBadRequest) {
		t.Fatalf("a batch with a bad topic: %v, want bad_request", err)
	}
	if got := len(history(t, c, "batch.a")); got != 2 {
		t.Errorf("batch.a holds %d messages after a refused batch, want 2", got)
	}
}

// flaky is a middleware in front of a node's API: it passes requests to
// publish paths through, except that it spoils the first fail answers,
// after the broker has handled the request, with spoil.
type flaky struct {
	mu       sync.Mutex
	fail     int
	spoil    func(w http.ResponseWriter)
	requests []recorded // publish requests seen
}

// recorded is one publish request the middleware saw.
type recorded struct {
	path, key string
	body      []byte
}

func (f *flaky) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/publish") {
			h.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		f.mu.Lock()
		f.requests = append(f.requests, recorded{path: r.URL.Path, key: r.Header.Get("Idempotency-Key"), body: body})
		spoil := f.fail > 0
		if spoil {
			f.fail--
		}
		f.mu.Unlock()
		if !spoil {
			h.ServeHTTP(w, r)
			return
		}
		// The broker handles the request; its answer is lost.
		h.ServeHTTP(httptest.NewRecorder(), r)
		f.spoil(w)
	})
}

func (f *flaky) seen() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

// dropConnection aborts the answer: the client sees the connection end.
func dropConnection(http.ResponseWriter) { panic(http.ErrAbortHandler) }

// unavailable answers 503 as a node shutting down would.
func unavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "0")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"simulated"}}`)
}

// A publish whose answer is lost after the broker stored it (the
// connection dropped, or a 503) is retried with the same idempotency key
// and stored once: the retry answers the first position.
func TestPublishRetryStoresOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(http.ResponseWriter)
	}{{"ConnectionDropped", dropConnection}, {"Unavailable", unavailable}} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flaky{fail: 1, spoil: tc.spoil}
			n := startNode(t, nodeConfig{Wrap: f.wrap})
			c := newClient(t, n.URL, client.Config{})
			p, err := c.Publish(ctxT(t), "retry.one", "once")
			if err != nil {
				t.Fatal(err)
			}
			if p.Offset != 1 {
				t.Errorf("the retry answered offset %d, want the first publish's 1", p.Offset)
			}
			if msgs := history(t, c, "retry.one"); len(msgs) != 1 || msgs[0].ID != p.ID {
				t.Errorf("history holds %d messages, want 1 with id %s", len(msgs), p.ID)
			}
			reqs := f.seen()
			if len(reqs) < 2 || reqs[0].key == "" {
				t.Fatalf("the middleware saw %d requests (first key %q), want a keyed request and its retry", len(reqs), reqs[0].key)
			}
			for _, r := range reqs[1:] {
				if r.key != reqs[0].key {
					t.Errorf("retry key %q, want the first %q", r.key, reqs[0].key)
				}
			}

			// A batch too: each message keeps its key across the retry.
			f.mu.Lock()
			f.fail, f.requests = 1, nil
			f.mu.Unlock()
			res, err := c.PublishBatch(ctxT(t), []client.Message{{Topic: "retry.one", Data: 2}, {Topic: "retry.two", Data: 3, IdempotencyKey: "mine"}})
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Offset != 2 || res[1].Offset != 1 {
				t.Errorf("batch retry answered offsets %d %d, want 2 1", res[0].Offset, res[1].Offset)
			}
			if a, b := history(t, c, "retry.one"), history(t, c, "retry.two"); len(a) != 2 || len(b) != 1 {
				t.Errorf("history: %d and %d messages, want 2 and 1", len(a), len(b))
			}
			reqs = f.seen()
			if len(reqs) < 2 {
				t.Fatalf("the middleware saw %d batch requests, want 2", len(reqs))
			}
			keys := func(body []byte) []string {
				var b struct {
					Messages []struct {
						Key string `json:"idempotency_key"`
					} `json:"messages"`
				}
				if err := json.Unmarshal(body, &b); err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, m := range b.Messages {
					out = append(out, m.Key)
				}
				return out
			}
			first, second := keys(reqs[0].body), keys(reqs[1].body)
			if len(first) != 2 || first[0] == "" || first[1] != "mine" || strings.Join(first, ",") != strings.Join(second, ",") {
				t.Errorf("batch keys %q then %q, want a generated key and \"mine\", the same twice", first, second)
			}
		})
	}
}

// Retries stop after Config.Retries; a negative Retries turns them off;
// answers other than 429/503 are never retried.
func TestPublishRetriesBounded(t *testing.T) {
	f := &flaky{fail: 1000, spoil: unavailable}
	n := startNode(t, nodeConfig{Wrap: f.wrap})
	for _, tc := range []struct {
		retries, requests int
	}{{2, 3}, {-1, 1}} {
		f.mu.Lock()
		f.requests = nil
		f.mu.Unlock()
		c := newClient(t, n.URL, client.Config{Retries: tc.retries})
		_, err := c.Publish(ctxT(t), "bounded.a", 1)
		var e *client.Error
		if !errors.As(err, &e) || e.Code != protocol.CodeUnavailable || e.Status != http.StatusServiceUnavailable || !errors.Is(err, client.ErrUnavailable) {
			t.Errorf("Retries %d: %v, want 503 unavailable", tc.retries, err)
		}
		if got := len(f.seen()); got != tc.requests {
			t.Errorf("Retries %d: %d requests, want %d", tc.retries, got, tc.requests)
		}
	}

	f.mu.Lock()
	f.requests, f.fail = nil, 0
	f.mu.Unlock()
	c := newClient(t, n.URL, client.Config{})
	if _, err := c.Publish(ctxT(t), "bounded..bad", 1); !client.IsCode(err, protocol.CodeBadRequest) {
		t.Errorf("bad topic: %v, want bad_request", err)
	}
	if got := len(f.seen()); got != 1 {
		t.Errorf("a 400 was sent %d times, want once", got)
	}
}

// A 429 with Retry-After is retried after that long.
func TestPublishHonoursRetryAfter(t *testing.T) {
	f := &flaky{fail: 1, spoil: func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"code":"rate_limited","message":"simulated"}}`)
	}}
	n := startNode(t, nodeConfig{Wrap: f.wrap})
	c := newClient(t, n.URL, client.Config{})
	start := time.Now()
	p, err := c.Publish(ctxT(t), "after.a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("the retry came after %v, want at least the 1 s of Retry-After", took)
	}
	if p.Offset != 1 {
		t.Errorf("offset %d, want 1: the retry found the first publish", p.Offset)
	}

	// Without retries the 429 comes back with its Retry-After.
	f.mu.Lock()
	f.fail = 1
	f.mu.Unlock()
	c = newClient(t, n.URL, client.Config{Retries: -1})
	_, err = c.Publish(ctxT(t), "after.a", 2)
	var e *client.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeRateLimited || e.Status != 429 || e.RetryAfter != time.Second {
		t.Errorf("got %v (%+v), want 429 rate_limited with RetryAfter 1s", err, e)
	}
}

// The broker's refusals come back as *Error with the protocol's code and
// the HTTP status.
func TestPublishErrors(t *testing.T) {
	n := startNode(t, nodeConfig{API: httpapi.Config{MaxBodySize: 1024, APIKeys: []auth.APIKey{
		{Name: "pub", Secret: "pub-secret", Topics: []string{"allowed.>"}},
		{Name: "admin", Secret: "admin-secret", Admin: true},
	}}})
	pub := newClient(t, n.URL, client.Config{APIKey: "pub-secret"})
	ctx := ctxT(t)
	for _, tc := range []struct {
		name   string
		c      *client.Client
		topic  string
		data   any
		code   string
		status int
		is     error
	}{
		{"NoKey", newClient(t, n.URL, client.Config{}), "allowed.a", 1, protocol.CodeUnauthorized, 401, client.ErrUnauthorized},
		{"WrongKey", newClient(t, n.URL, client.Config{APIKey: "nope"}), "allowed.a", 1, protocol.CodeUnauthorized, 401, client.ErrUnauthorized},
		{"TopicOutsideTheKey", pub, "denied.a", 1, protocol.CodeForbidden, 403, client.ErrForbidden},
		{"BadTopic", pub, "allowed..a", 1, protocol.CodeBadRequest, 400, client.ErrBadRequest},
		{"Pattern", pub, "allowed.*", 1, protocol.CodeBadRequest, 400, client.ErrBadRequest},
		{"TooLarge", pub, "allowed.a", strings.Repeat("x", 2000), protocol.CodeTooLarge, 413, client.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Publish(ctx, tc.topic, tc.data)
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Status != tc.status || e.Message == "" {
				t.Fatalf("got %v, want %d %s", err, tc.status, tc.code)
			}
			if !errors.Is(err, tc.is) || !client.IsCode(err, tc.code) || errors.Is(err, client.ErrInternal) {
				t.Errorf("errors.Is / IsCode do not match %v", err)
			}
			if !strings.Contains(e.Error(), tc.code) {
				t.Errorf("Error() = %q, want the code in it", e.Error())
			}
		})
	}
	if p, err := pub.Publish(ctx, "allowed.a", 1); err != nil || p.Offset != 1 {
		t.Fatalf("allowed publish: %+v, %v", p, err)
	}
	// The server API takes an admin key.
	if _, err := pub.History(ctx, "allowed.a", client.HistoryOptions{}); !client.IsCode(err, protocol.CodeForbidden) {
		t.Errorf("History with a publisher key: %v, want forbidden", err)
	}
	admin := newClient(t, n.URL, client.Config{APIKey: "admin-secret"})
	if h, err := admin.History(ctx, "allowed.a", client.HistoryOptions{}); err != nil || len(h.Messages) != 1 {
		t.Errorf("History with the admin key: %+v, %v; want 1 message", h, err)
	}
}

// An unreachable broker is protocol.CodeUnavailable wrapping the network error,
// after the retries.
func TestPublishUnreachable(t *testing.T) {
	n := startNode(t, nodeConfig{})
	url := n.URL
	n.shutdown()
	c := newClient(t, url, client.Config{Retries: 1})
	_, err := c.Publish(ctxT(t), "gone.a", 1)
	var e *client.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeUnavailable || e.Status != 0 || errors.Unwrap(e) == nil {
		t.Fatalf("got %v, want unavailable with the network error", err)
	}
}

func TestNewChecksTheURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "://x"} {
		if _, err := client.New(client.Config{URL: u}); err == nil {
			t.Errorf("New(%q) accepted it", u)
		}
	}
	for _, u := range []string{"http://localhost:8080", "https://b.example.com/prefix/", "ws://localhost", "wss://b.example.com"} {
		if _, err := client.New(client.Config{URL: u}); err != nil {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}
