package stream_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpstream"
	"github.com/tidings-io/tidings/transport/stream"
)

func TestHeadersAndWelcomeFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{Settings: httpstream.Settings{NodeID: "n1", Heartbeat: time.Hour}}, envOpts{})
	c := e.open(t, "")
	h := c.resp.Header
	for k, v := range map[string]string{
		"Content-Type": "application/octet-stream", "Cache-Control": "no-cache, no-transform",
		"X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff",
		"Access-Control-Expose-Headers": stream.KeyHeader,
	} {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	w := c.expect("welcome")
	if w["node"] != "n1" || w["heartbeat"] != float64(3600) || uuid.Validate(fmt.Sprint(w["session"])) != nil {
		t.Fatalf("welcome %v", w)
	}
	if _, ok := w["user"]; ok {
		t.Fatalf("anonymous welcome names a user: %v", w)
	}
	if c2 := e.open(t, ""); c2.key == c.key {
		t.Fatalf("two sessions share the key %s", c.key)
	}
	if n := e.srv.Sessions(); n != 2 {
		t.Fatalf("Sessions() = %d, want 2", n)
	}
}

func TestSubscribePublishUnsubscribeThroughPosts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")

	c.mustPost(`{"op":"subscribe","topic":"news","ref":"s1"}`)
	sub := c.expect("subscribed")
	if sub["ref"] != "s1" || sub["topic"] != "news" || sub["recovered"] != false || sub["offset"] != float64(0) {
		t.Fatalf("subscribed %v", sub)
	}
	c.expectMessage(testkit.Publish(t, e.b, "news", `{"n": 1}`), "")

	// An array: run in order, each answered on the stream.
	c.mustPost(`[{"op":"publish","topic":"news","data":{"from":"post"},"ref":"p1"}, {"op":"ping","ref":"x"}]`)
	got := map[string]map[string]any{}
	for range 3 {
		f := c.next()
		m := decode(t, f.payload)
		got[fmt.Sprint(m["type"])] = m
	}
	if p := got["published"]; p["ref"] != "p1" || p["offset"] != float64(2) {
		t.Fatalf("published %v", p)
	}
	if m := got["message"]; m["offset"] != float64(2) || !strings.Contains(fmt.Sprint(m["data"]), "post") {
		t.Fatalf("message %v", m)
	}
	if p := got["pong"]; p["ref"] != "x" {
		t.Fatalf("pong %v (frames %v)", p, got)
	}

	c.mustPost(`{"op":"unsubscribe","topic":"news","ref":"u1"}`)
	if u := c.expect("unsubscribed"); u["ref"] != "u1" || u["topic"] != "news" {
		t.Fatalf("unsubscribed %v", u)
	}
	testkit.Publish(t, e.b, "news", `3`)
	c.mustPost(`{"op":"ping","ref":"after"}`)
	if p := c.expect("pong"); p["ref"] != "after" {
		t.Fatalf("pong %v: a message after unsubscribe?", p)
	}
	// history runs as on a WebSocket.
	c.mustPost(`{"op":"history","topic":"news","ref":"h","limit":2}`)
	if h := c.expect("history"); h["ref"] != "h" || len(h["messages"].([]any)) != 2 {
		t.Fatalf("history %v", h)
	}
}

func TestWildcardSubscription(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")
	c.mustPost(`[{"op":"subscribe","topic":"chat.*"},{"op":"subscribe","topic":"chat.one"}]`)
	if s := c.expect("subscribed"); s["topic"] != "chat.*" {
		t.Fatalf("subscribed %v", s)
	} else if _, ok := s["offset"]; ok {
		t.Fatalf("a wildcard's subscribed carries an offset: %v", s)
	}
	c.expect("subscribed")
	c.expectMessage(testkit.Publish(t, e.b, "chat.two", `"x"`), "chat.*")
	m := testkit.Publish(t, e.b, "chat.one", `"y"`)
	// Once through each subscription; both frames as the WebSocket's.
	a, b := c.next(), c.next()
	exact, wild := string(wsMessage(m, "")), string(wsMessage(m, "chat.*"))
	if !(string(a.raw) == exact && string(b.raw) == wild || string(a.raw) == wild && string(b.raw) == exact) {
		t.Fatalf("frames %q and %q, want one exact and one through chat.*", a.raw, b.raw)
	}
}

func TestResumeWithSince(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")
	c.mustPost(`{"op":"subscribe","topic":"t"}`)
	c.expect("subscribed")
	var last *broker.Message
	for i := 1; i <= 3; i++ {
		last = testkit.Publish(t, e.b, "t", fmt.Sprint(i))
		c.expectMessage(last, "")
	}
	c.close()
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := e.srv.Sessions(); n != 0 {
			return fmt.Errorf("%d sessions after the client left", n)
		}
		return nil
	})
	if status, _ := c.post(`{"op":"ping"}`); status != http.StatusNotFound {
		t.Fatalf("POST to an ended session: %d, want 404", status)
	}

	var missed []*broker.Message
	for i := 4; i <= 6; i++ {
		missed = append(missed, testkit.Publish(t, e.b, "t", fmt.Sprint(i)))
	}
	c2 := e.open(t, "")
	c2.expect("welcome")
	c2.mustPost(fmt.Sprintf(`{"op":"subscribe","topic":"t","ref":"r","since":{"offset":%d,"epoch":%q}}`, last.Offset, last.Epoch))
	if s := c2.expect("subscribed"); s["recovered"] != true || s["offset"] != float64(6) {
		t.Fatalf("subscribed %v, want recovered at offset 6", s)
	}
	for _, m := range missed {
		c2.expectMessage(m, "")
	}
	c2.expectMessage(testkit.Publish(t, e.b, "t", `7`), "")
	c2.mustPost(`{"op":"ping","ref":"end"}`)
	if p := c2.expect("pong"); p["ref"] != "end" {
		t.Fatalf("pong %v", p)
	}
}

// verifier accepts the tokens "good" (subscribe and publish public.>)
// and "brief" (the same, expiring in 300 ms).
type verifier struct{}

func (verifier) Verify(_ context.Context, token string) (*auth.Claims, error) {
	exp := time.Now().Add(time.Hour)
	switch token {
	case "good":
	case "brief":
		exp = time.Now().Add(300 * time.Millisecond)
	default:
		return nil, broker.NewError(broker.ErrUnauthorized, "token is not valid")
	}
	perms, err := auth.NewPermissions([]string{"public.>"}, []string{"public.>"})
	if err != nil {
		return nil, err
	}
	return &auth.Claims{Subject: "alice", Permissions: perms, Expires: exp}, nil
}

func (verifier) Leeway() time.Duration { return 0 }

func TestTokenAndPermissions(t *testing.T) {
	t.Parallel()
	door := admit.New(admit.Config{Tokens: verifier{}})
	e := newEnv(t, stream.Config{Door: door, Services: session.Services{Tokens: verifier{}}}, envOpts{})
	for _, q := range []string{"", "?token=bad"} {
		resp, err := e.ts.Client().Get(e.url() + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(stream.KeyHeader) != "" {
			t.Fatalf("GET%s: %d, want 401 and no key", q, resp.StatusCode)
		}
	}
	c := e.open(t, "good")
	if w := c.expect("welcome"); w["user"] != "alice" {
		t.Fatalf("welcome %v", w)
	}
	c.mustPost(`[{"op":"subscribe","topic":"private.x","ref":"1"},{"op":"publish","topic":"private.x","data":1,"ref":"2"},
		{"op":"subscribe","topic":"public.a","ref":"3"},{"op":"publish","topic":"public.a","data":1,"ref":"4"}]`)
	for _, ref := range []string{"1", "2"} {
		if er := c.expect("error"); er["ref"] != ref || er["code"] != protocol.CodeForbidden {
			t.Fatalf("error %v, want forbidden for ref %s", er, ref)
		}
	}
	if s := c.expect("subscribed"); s["ref"] != "3" {
		t.Fatalf("subscribed %v", s)
	}
	types := map[any]bool{}
	for range 2 {
		types[decode(t, c.next().payload)["type"]] = true
	}
	if !types["published"] || !types["message"] {
		t.Fatalf("after publishing to public.a: %v", types)
	}
	if n := e.srv.Refused()[limit.ReasonForbidden]; n != 2 {
		t.Fatalf("refused forbidden %d, want 2", n)
	}
	// refresh runs as on a WebSocket.
	c.mustPost(`{"op":"refresh","token":"good","ref":"r"}`)
	if r := c.expect("refreshed"); r["ref"] != "r" {
		t.Fatalf("refreshed %v", r)
	}
	if n := door.Refused()[limit.ReasonToken]; n != 2 {
		t.Fatalf("door refused %d tokens, want 2", n)
	}
}

func TestTokenExpiryCloses1008(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{Door: admit.New(admit.Config{Tokens: verifier{}}), Services: session.Services{Tokens: verifier{}}}, envOpts{})
	c := e.open(t, "brief")
	c.expect("welcome")
	c.expectClose(1008, "token expired")
}

func TestBadPosts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{MaxBodySize: 100}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")

	for name, body := range map[string]string{
		"not JSON":                `{"op":"ping"`,
		"empty":                   ``,
		"a string":                `"ping"`,
		"an array of non-objects": `[{"op":"ping","ref":"no"}, 1]`,
		"two objects":             `{"op":"ping"} {"op":"ping"}`,
	} {
		if status, er := c.post(body); status != http.StatusBadRequest || er.Code != protocol.CodeBadRequest {
			t.Errorf("%s: %d %+v, want 400 bad_request", name, status, er)
		}
	}
	// The limit is inclusive: 100 bytes pass, 101 do not, and nothing of
	// an oversized body runs.
	at := `{"op":"ping","ref":"at the limit"}`
	at += strings.Repeat(" ", 100-len(at))
	over := `[{"op":"ping","ref":"over"}]` + strings.Repeat(" ", 101-28)
	if status, er := c.post(over); status != http.StatusRequestEntityTooLarge || er.Code != protocol.CodeTooLarge {
		t.Errorf("101 bytes: %d %+v, want 413 too_large", status, er)
	}
	c.mustPost(at)
	// A command the session core refuses: an error frame, the session
	// goes on.
	c.mustPost(`{"op":"jump","ref":"j"}`)
	if p := c.expect("pong"); p["ref"] != "at the limit" {
		t.Fatalf("pong %v: something of a refused body ran", p)
	}
	if er := c.expect("error"); er["ref"] != "j" || er["code"] != protocol.CodeBadRequest {
		t.Fatalf("error %v", er)
	}

	for name, key := range map[string]string{
		"unknown key":    strings.Repeat("ab", 16),
		"not a key":      "xyz",
		"the session id": c.id,
	} {
		if status, er := e.postTo(t, key, `{"op":"ping"}`); status != http.StatusNotFound || er.Code != protocol.CodeNotFound {
			t.Errorf("%s: %d %+v, want 404 not_found", name, status, er)
		}
	}
	for _, tc := range []struct{ method, url, allow string }{
		{http.MethodGet, e.url() + "/" + c.key, http.MethodPost},
		{http.MethodPut, e.url() + "/" + c.key, http.MethodPost},
		{http.MethodPost, e.url(), http.MethodGet},
		{http.MethodDelete, e.url(), http.MethodGet},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow %s", tc.method, tc.url, resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
		}
	}
	// The session is still there.
	c.mustPost(`{"op":"ping","ref":"still"}`)
	if p := c.expect("pong"); p["ref"] != "still" {
		t.Fatalf("pong %v", p)
	}
}

func TestCommandRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{OpLimits: session.OpLimits{OpRate: 0.001, OpBurst: 1, OpRefusals: 1}}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")
	c.mustPost(`[{"op":"ping","ref":"1"},{"op":"ping","ref":"2"},{"op":"ping","ref":"3"},{"op":"ping","ref":"4"}]`)
	if p := c.expect("pong"); p["ref"] != "1" {
		t.Fatalf("pong %v", p)
	}
	if er := c.expect("error"); er["ref"] != "2" || er["code"] != protocol.CodeRateLimited {
		t.Fatalf("error %v, want rate_limited", er)
	}
	// Over the rate again: the session is closed, and runs nothing more.
	c.expectClose(1008, "rate limit exceeded")
}

func TestHeartbeatPingFrames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{Settings: httpstream.Settings{Heartbeat: 20 * time.Millisecond}}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")
	for range 2 {
		if f := c.nextAny(); string(f.raw) != "\x89\x00" {
			t.Fatalf("frame %x, want an empty ping", f.raw)
		}
	}
}

func TestHTTP2(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{}, envOpts{http2: true})
	c := e.open(t, "")
	if c.resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", c.resp.Proto)
	}
	c.expect("welcome")
	c.mustPost(`{"op":"subscribe","topic":"h2"}`)
	c.expect("subscribed")
	c.expectMessage(testkit.Publish(t, e.b, "h2", `{"over":"h2"}`), "")
	c.close()
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := e.srv.Sessions(); n != 0 {
			return fmt.Errorf("%d sessions after the client left", n)
		}
		return nil
	})
}

func TestMaxSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{MaxSessions: 1}, envOpts{})
	e.open(t, "").expect("welcome")
	resp, err := e.ts.Client().Get(e.url())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second session: %d, want 503 with Retry-After", resp.StatusCode)
	}
	if n := e.srv.Stats().Refused[limit.ReasonMaxSessions]; n != 1 {
		t.Fatalf("refused %d, want 1", n)
	}
}

// TestCrossOriginPage: a page of another origin the Door allows reads the
// stream, its key, and the answers to its POSTs.
func TestCrossOriginPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{Door: admit.New(admit.Config{Policy: admit.Policy{AllowedOrigins: []string{"https://app.example"}}})}, envOpts{})
	get := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, e.url(), nil)
		req.Header.Set("Origin", origin)
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := get("https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another origin: %d, want 403", resp.StatusCode)
	}
	resp := get("https://app.example")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("allowed origin: %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	req, _ := http.NewRequest(http.MethodPost, e.url()+"/"+resp.Header.Get(stream.KeyHeader), strings.NewReader(`{"op":"ping"}`))
	req.Header.Set("Origin", "https://app.example")
	post, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusNoContent || post.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("POST: %d, Access-Control-Allow-Origin %q", post.StatusCode, post.Header.Get("Access-Control-Allow-Origin"))
	}
}
