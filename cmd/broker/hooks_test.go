package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/wstest"
)

// backend is an application backend answering the broker's hooks, and
// remembering what it was asked.
type backend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []map[string]any
	down bool // answer every hook with 500
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &req)
		b.mu.Lock()
		b.seen = append(b.seen, req)
		down := b.down
		b.mu.Unlock()
		cookies, _ := req["cookies"].(map[string]any)
		topic, _ := req["topic"].(string)
		answer := map[string]any{"allow": true}
		switch {
		case down:
			http.Error(w, "down", http.StatusInternalServerError)
			return
		case r.URL.Path == "/connect" && cookies["sid"] == "alice":
			answer = map[string]any{"allow": true, "user": "alice", "info": map[string]any{"name": "Alice"}, "channels": []string{"inbox.alice"}}
		case r.URL.Path == "/connect" && cookies["sid"] == "boom":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		case r.URL.Path == "/connect":
			answer = map[string]any{"allow": false, "code": "unauthorized", "message": "log in first"}
		case r.URL.Path == "/subscribe" && strings.HasPrefix(topic, "secret."):
			answer = map[string]any{"allow": false, "code": "forbidden", "message": "not yours"}
		case r.URL.Path == "/publish" && strings.HasPrefix(topic, "shout."):
			answer = map[string]any{"allow": true, "data": map[string]any{"text": "QUIET PLEASE"}}
		case r.URL.Path == "/publish" && strings.HasPrefix(topic, "ro."):
			answer = map[string]any{"allow": false, "code": "forbidden", "message": "read only"}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// last returns the last request of hook.
func (b *backend) last(hook string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.seen) - 1; i >= 0; i-- {
		if b.seen[i]["hook"] == hook {
			return b.seen[i]
		}
	}
	return nil
}

func (b *backend) setDown(down bool) {
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
}

// The backend hooks decide connect, subscribe and publish for a node
// without tokens: its answers reach the client unchanged, a publish's
// data is replaced, a failing backend is `unavailable` and the session
// stays usable, only the listed headers and cookies are forwarded, and
// /readyz does not depend on the backend.
func TestBackendHooks(t *testing.T) {
	t.Parallel()
	be := newBackend(t)
	n := startNode(t, nil, "-demo=false", "-hook-connect", be.srv.URL+"/connect", "-hook-subscribe", be.srv.URL+"/subscribe",
		"-hook-publish", be.srv.URL+"/publish", "-hook-forward-cookies", "sid", "-hook-forward-headers", "X-Tenant")
	deadline := time.Now().Add(20 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	dial := func(cookie string) (*wstest.Conn, error) {
		h := http.Header{"Cookie": {cookie + "; other=x"}, "X-Tenant": {"acme"}, "X-Other": {"no"}}
		return wstest.Dialer{Header: h}.Open(ctx, "ws://"+n.addr+"/v1/ws")
	}

	// Refused and failed connects are answered before the upgrade.
	_, err := dial("sid=nobody")
	var refused *wstest.RefusedError
	if !errors.As(err, &refused) || refused.Status != http.StatusForbidden || !strings.Contains(string(refused.Body), `"code":"unauthorized","message":"log in first"`) {
		t.Fatalf("a connect the backend refuses: %v, want 403 with its code and message", err)
	}
	if _, err := dial("sid=boom"); !errors.As(err, &refused) || refused.Status != http.StatusServiceUnavailable || !strings.Contains(string(refused.Body), "backend unavailable") {
		t.Fatalf("a connect the backend fails: %v, want 503 backend unavailable", err)
	}

	// An allowed connect: the backend's user and channels.
	c, err := dial("sid=alice")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if w, err := c.Expect("welcome", deadline); err != nil || w.User != "alice" {
		t.Fatalf("welcome %v %v, want user alice", w.Raw, err)
	}
	if f, err := c.Expect("subscribed", deadline); err != nil || f.Topic != "inbox.alice" || f.Has("ref") {
		t.Fatalf("server-side subscription %v %v, want inbox.alice without ref", f.Raw, err)
	}
	req := be.last("connect")
	if cookies, _ := req["cookies"].(map[string]any); len(cookies) != 1 || cookies["sid"] != "alice" {
		t.Errorf("cookies forwarded %v, want sid only", req["cookies"])
	}
	if headers, _ := req["headers"].(map[string]any); len(headers) != 1 || headers["X-Tenant"] != "acme" {
		t.Errorf("headers forwarded %v, want X-Tenant only", req["headers"])
	}

	// Subscribe: the backend's refusal as it gave it; an allowed one.
	if err := c.Send(map[string]any{"op": "subscribe", "topic": "secret.plans", "ref": "s1"}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Expect("error", deadline); err != nil || f.Ref != "s1" || f.Code != "forbidden" || f.Message != "not yours" {
		t.Fatalf("a subscribe the backend refuses: %v %v", f.Raw, err)
	}
	if err := c.Subscribe(deadline, "shout.room", "ro.room"); err != nil {
		t.Fatal(err)
	}
	if req := be.last("subscribe"); req["user"] != "alice" || req["topic"] != "ro.room" {
		t.Errorf("subscribe hook asked %v", req)
	}

	// Publish: the backend replaces the data, or refuses.
	if err := c.Send(map[string]any{"op": "publish", "topic": "shout.room", "data": map[string]any{"text": "HELLO"}, "ref": "p1"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]wstest.Frame{}
	for len(got) < 2 {
		f, err := c.Next(deadline)
		if err != nil {
			t.Fatal(err)
		}
		got[f.Type] = f
	}
	if m := got["message"]; string(m.Data) != `{"text":"QUIET PLEASE"}` {
		t.Errorf("the published message carries %s, want the backend's data", m.Data)
	}
	if err := c.Send(map[string]any{"op": "publish", "topic": "ro.room", "data": 1, "ref": "p2"}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Expect("error", deadline); err != nil || f.Ref != "p2" || f.Code != "forbidden" || f.Message != "read only" {
		t.Fatalf("a publish the backend refuses: %v %v", f.Raw, err)
	}

	// A failing backend: unavailable, the session goes on, /readyz too.
	be.setDown(true)
	if err := c.Send(map[string]any{"op": "subscribe", "topic": "other.room", "ref": "s2"}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Expect("error", deadline); err != nil || f.Ref != "s2" || f.Code != "unavailable" || f.Message != "backend unavailable" {
		t.Fatalf("a subscribe while the backend fails: %v %v", f.Raw, err)
	}
	resp, err := http.Get("http://" + n.addr + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz while the backend fails: %v %v, want 200", resp, err)
	}
	resp.Body.Close()
	be.setDown(false)
	if err := c.Send(map[string]any{"op": "ping", "ref": "alive"}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Expect("pong", deadline); err != nil || f.Ref != "alive" {
		t.Fatalf("the session after a backend failure: %v %v", f.Raw, err)
	}
}
