package admit_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
)

// verifier grants "good" to alice and refuses every other token.
type verifier struct{}

func (verifier) Verify(_ context.Context, token string) (*auth.Claims, error) {
	switch token {
	case "good":
		return &auth.Claims{Subject: "alice", TokenID: "t1"}, nil
	case "revoked":
		return nil, auth.ErrTokenRevoked
	}
	return nil, errors.New("token is not valid")
}

func (verifier) Leeway() time.Duration { return 0 }

// request returns a request from addr (a loopback peer: no proxy).
func request(addr string, query string, hdr map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://node.test/v1/sse?"+query, nil)
	r.RemoteAddr = addr
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

// refusal answers r with d and returns the status and error code, or 0
// and the pass when admitted.
func refusal(t *testing.T, d *admit.Door, r *http.Request) (int, string, *admit.Pass) {
	t.Helper()
	w := httptest.NewRecorder()
	p := d.Admit(w, r)
	if p != nil {
		if w.Code != http.StatusOK || w.Body.Len() != 0 {
			t.Fatalf("admitted with an answer written: %d %q", w.Code, w.Body)
		}
		return 0, "", p
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Message == "" {
		t.Fatalf("refusal body %q: %v", w.Body, err)
	}
	return w.Code, body.Error.Code, nil
}

func TestMaxSessionsHoldsAcrossPassesUntilReleased(t *testing.T) {
	d := admit.New(admit.Config{Policy: admit.Policy{MaxSessions: 2, IPConnRate: -1}})
	var passes []*admit.Pass
	for i := 0; i < 2; i++ {
		status, _, p := refusal(t, d, request("10.0.0.1:1000", "", nil))
		if status != 0 {
			t.Fatalf("pass %d refused with %d", i, status)
		}
		passes = append(passes, p)
	}
	status, code, _ := refusal(t, d, request("10.0.0.2:1000", "", nil))
	if status != http.StatusServiceUnavailable || code != protocol.CodeUnavailable {
		t.Fatalf("third session: %d %s, want 503 unavailable", status, code)
	}
	passes[0].Release()
	passes[0].Release() // a second release gives nothing back twice
	if n := d.Admitted(); n != 1 {
		t.Fatalf("admitted %d after one release, want 1", n)
	}
	if status, _, _ := refusal(t, d, request("10.0.0.2:1000", "", nil)); status != 0 {
		t.Fatalf("refused with %d after a release", status)
	}
	if n := d.Refused()[limit.ReasonMaxSessions]; n != 1 {
		t.Fatalf("max-sessions refusals %d, want 1", n)
	}
}

func TestAddressBoundAndRate(t *testing.T) {
	d := admit.New(admit.Config{Policy: admit.Policy{IPMaxConns: 1, IPConnRate: -1}})
	if status, _, _ := refusal(t, d, request("10.0.0.1:1", "", nil)); status != 0 {
		t.Fatalf("first refused: %d", status)
	}
	if status, code, _ := refusal(t, d, request("10.0.0.1:2", "", nil)); status != http.StatusTooManyRequests || code != protocol.CodeRateLimited {
		t.Fatalf("second from one address: %d %s", status, code)
	}
	if status, _, _ := refusal(t, d, request("10.0.0.9:1", "", nil)); status != 0 {
		t.Fatalf("another address refused: %d", status)
	}
	r := admit.New(admit.Config{Policy: admit.Policy{IPConnRate: 1, IPConnBurst: 1}})
	refusal(t, r, request("10.0.0.1:1", "", nil))
	w := httptest.NewRecorder()
	if r.Admit(w, request("10.0.0.1:2", "", nil)) != nil || w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if n := r.Refused()[limit.ReasonIPRate]; n != 1 {
		t.Fatalf("rate refusals %d", n)
	}
}

func TestTokensAndTheirInfo(t *testing.T) {
	d := admit.New(admit.Config{Tokens: verifier{}})
	for _, tc := range []struct {
		query  string
		header map[string]string
		reason string
	}{
		{"", nil, "token"},
		{"token=bad", nil, "token"},
		{"token=revoked", nil, "token_revoked"},
		{"", map[string]string{"Authorization": "Basic Z29vZA=="}, "token"},
	} {
		w := httptest.NewRecorder()
		if d.Admit(w, request("127.0.0.1:1", tc.query, tc.header)) != nil || w.Code != http.StatusUnauthorized ||
			w.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("%q %v: %d %q", tc.query, tc.header, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	if got := d.Refused(); got[limit.ReasonToken] != 3 || got[limit.ReasonTokenRevoked] != 1 {
		t.Fatalf("refusals %v", got)
	}
	for _, r := range []*http.Request{
		request("127.0.0.1:1", "token=good", nil),
		request("127.0.0.1:1", "", map[string]string{"Authorization": "Bearer good"}),
	} {
		_, _, p := refusal(t, d, r)
		if p == nil || p.User() != "alice" {
			t.Fatalf("good token: pass %+v", p)
		}
		if info := p.Info(session0()); info.Subject != "alice" || info.TokenID != "t1" || info.ID != "s1" {
			t.Fatalf("info %+v", info)
		}
		p.Release()
	}
	if d.Admitted() != 0 {
		t.Fatalf("admitted %d after every release", d.Admitted())
	}
}

func TestAnonymousPublishesOnlyFromLoopback(t *testing.T) {
	d := admit.New(admit.Config{})
	for addr, publish := range map[string]bool{"127.0.0.1:1": true, "10.0.0.1:1": false} {
		_, _, p := refusal(t, d, request(addr, "", nil))
		info := p.Info(session0())
		if info.Subject != "" || info.Permissions == nil || info.Permissions.AllowPublish("a.b") != publish {
			t.Fatalf("%s: anonymous info %+v, publish allowed want %v", addr, info, publish)
		}
		p.Release()
	}
}

func TestOrigins(t *testing.T) {
	own := admit.New(admit.Config{})
	allowed := admit.New(admit.Config{Policy: admit.Policy{AllowedOrigins: []string{"https://*.example.com"}}})
	for _, tc := range []struct {
		door   *admit.Door
		origin string
		ok     bool
	}{
		{own, "", true},
		{own, "http://node.test", false}, // Host alone proves nothing
		{own, "http://evil.example", false},
		{allowed, "https://a.example.com", true},
		{allowed, "https://a.b.example.com", true},
		{allowed, "https://example.com", false},
		{allowed, "http://a.example.com", false},
	} {
		hdr := map[string]string{}
		if tc.origin != "" {
			hdr["Origin"] = tc.origin
		}
		status, code, p := refusal(t, tc.door, request("10.0.0.1:1", "", hdr))
		if (p != nil) != tc.ok || (!tc.ok && (status != http.StatusForbidden || code != protocol.CodeForbidden)) {
			t.Fatalf("origin %q: admitted %v (%d %s), want %v", tc.origin, p != nil, status, code, tc.ok)
		}
		if p != nil {
			p.Release()
		}
	}
	if n := own.Refused()[limit.ReasonOrigin]; n != 2 {
		t.Fatalf("origin refusals %d, want 2", n)
	}
}

// session0 is a transport's part of a session's info.
func session0() session.Info { return session.Info{ID: "s1", Remote: "r"} }
