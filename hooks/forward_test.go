package hooks_test

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/hooks"
)

// upgrade is a client's upgrade request with headers and cookies of
// every kind.
func upgrade() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://chat.example/v1/ws", nil)
	r.Header.Set("X-Tenant", "acme")
	r.Header.Add("X-Request-Id", "1")
	r.Header.Add("X-Request-Id", "2")
	r.Header.Set("Authorization", "Bearer secret")
	r.Header.Set("Accept-Language", "fr")
	r.Header.Set("X-Huge", strings.Repeat("h", hooks.MaxForwardedValue+1))
	r.Header.Set("X-Empty", "")
	r.Header.Add("Cookie", "sid=abc; theme=dark; sid=second")
	r.Header.Add("Cookie", "csrf=t0k")
	r.Header.Add("Cookie", "big="+strings.Repeat("c", hooks.MaxForwardedValue+1))
	return r
}

// TestForwarded: only the headers and cookies the config names go to the
// backend; headers whatever their case, cookies by exact name; Cookie
// and Authorization only when named.
func TestForwarded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		headers, cookies []string
		wantH, wantC     map[string]string
	}{
		{name: "none"},
		{
			name:    "listed ones, any case",
			headers: []string{"x-tenant", "X-REQUEST-ID", "host", "X-Missing", "X-Huge", "X-Empty"},
			cookies: []string{"sid", "Theme", "csrf", "big", "missing"},
			wantH:   map[string]string{"X-Tenant": "acme", "X-Request-Id": "1, 2", "Host": "chat.example"},
			wantC:   map[string]string{"sid": "abc", "csrf": "t0k"},
		},
		{
			// The Cookie header, with the big cookie, is over the bound:
			// TestForwardedCookieHeader forwards one within it.
			name:    "authorization when named",
			headers: []string{"cookie", "Authorization"},
			wantH:   map[string]string{"Authorization": "Bearer secret"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := hooks.Config{ForwardHeaders: tc.headers, ForwardCookies: tc.cookies}
			gotH, gotC := hooks.Forwarded(upgrade(), cfg)
			if !maps.Equal(gotH, tc.wantH) {
				t.Errorf("headers %v, want %v", gotH, tc.wantH)
			}
			if !maps.Equal(gotC, tc.wantC) {
				t.Errorf("cookies %v, want %v", gotC, tc.wantC)
			}
			h := newHooks(t, cfg)
			gotH2, gotC2 := h.Forwarded(upgrade())
			if !maps.Equal(gotH2, gotH) || !maps.Equal(gotC2, gotC) {
				t.Errorf("Hooks.Forwarded = %v %v, want %v %v", gotH2, gotC2, gotH, gotC)
			}
		})
	}
}

// TestForwardedCookieHeader: a Cookie header within the bound is
// forwarded whole when named.
func TestForwardedCookieHeader(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/v1/ws", nil)
	r.Header.Add("Cookie", "a=1")
	r.Header.Add("Cookie", "b=2")
	got, _ := hooks.Forwarded(r, hooks.Config{ForwardHeaders: []string{"Cookie"}})
	if want := map[string]string{"Cookie": "a=1; b=2"}; !maps.Equal(got, want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	if got, _ := hooks.Forwarded(r, hooks.Config{ForwardHeaders: []string{"X-Other"}}); got != nil {
		t.Errorf("headers %v, want none", got)
	}
}

// TestForwardedReachTheBackend: what Forwarded captured at the upgrade
// is what the backend reads in the connect request.
func TestForwardedReachTheBackend(t *testing.T) {
	t.Parallel()
	b := newBackend(t, allow)
	cfg := allHooks(b)
	cfg.ForwardHeaders = []string{"X-Tenant"}
	cfg.ForwardCookies = []string{"sid"}
	h := newHooks(t, cfg)
	headers, cookies := h.Forwarded(upgrade())
	if _, err := h.Call(t.Context(), hooks.Connect, hooks.Request{Session: "s", Headers: headers, Cookies: cookies}); err != nil {
		t.Fatal(err)
	}
	want := `{"hook": "connect", "session": "s", "headers": {"X-Tenant": "acme"}, "cookies": {"sid": "abc"}}`
	if body := b.lastRequest().body; !jsonEqual(t, body, []byte(want)) {
		t.Errorf("request %s, want %s", body, want)
	}
	// The client's headers are in the body only, never headers of the
	// hook request itself.
	if v := b.lastRequest().header.Get("X-Tenant"); v != "" {
		t.Errorf("the hook request has X-Tenant %q", v)
	}
}
