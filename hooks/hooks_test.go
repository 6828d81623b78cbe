package hooks_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/protocol"
)

func TestNewChecksTheConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  hooks.Config
		ok   bool
	}{
		{"every hook off", hooks.Config{}, true},
		{"http", hooks.Config{Connect: "http://backend:8080/hooks/connect"}, true},
		{"https with a query", hooks.Config{Publish: "https://backend.example/p?x=1"}, true},
		{"ftp", hooks.Config{Subscribe: "ftp://backend/s"}, false},
		{"no scheme", hooks.Config{Connect: "backend:8080/connect"}, false},
		{"relative", hooks.Config{Refresh: "/refresh"}, false},
		{"no host", hooks.Config{Connect: "http:///connect"}, false},
		{"a fragment", hooks.Config{Connect: "http://backend/c#x"}, false},
		{"not a URL", hooks.Config{Connect: "http://[::1"}, false},
		{"an empty header name", hooks.Config{ForwardHeaders: []string{"X-A", ""}}, false},
		{"an empty cookie name", hooks.Config{ForwardCookies: []string{""}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := hooks.New(tc.cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				h.Close()
				return
			}
			if !errors.Is(err, hooks.ErrConfig) {
				t.Errorf("New = %v, want an error wrapping ErrConfig", err)
			}
		})
	}
}

func TestKind(t *testing.T) {
	t.Parallel()
	for k, want := range map[hooks.Kind]string{
		hooks.Connect: "connect", hooks.Subscribe: "subscribe", hooks.Publish: "publish", hooks.Refresh: "refresh",
		0: "Kind(0)", 9: "Kind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}

// TestEnabled: a hook is on when it has a URL; a nil *Hooks has none on;
// Call of a hook that is off fails with ErrOff, which is no client error.
func TestEnabled(t *testing.T) {
	t.Parallel()
	h := newHooks(t, hooks.Config{Subscribe: "http://127.0.0.1:1/s", Publish: "http://127.0.0.1:1/p"})
	for k, want := range map[hooks.Kind]bool{hooks.Connect: false, hooks.Subscribe: true, hooks.Publish: true, hooks.Refresh: false, 0: false, 7: false} {
		if got := h.Enabled(k); got != want {
			t.Errorf("Enabled(%v) = %v, want %v", k, got, want)
		}
	}
	var none *hooks.Hooks
	if none.Enabled(hooks.Connect) {
		t.Error("a nil *Hooks has connect on")
	}
	none.Close()
	for _, hh := range []*hooks.Hooks{h, none} {
		_, err := hh.Call(t.Context(), hooks.Connect, hooks.Request{})
		if !errors.Is(err, hooks.ErrOff) || broker.ClientError(err).Code != protocol.CodeInternal {
			t.Errorf("Call(connect) = %v, want ErrOff", err)
		}
	}
}

// testClaims are a verified token's claims.
func testClaims(t testing.TB) *auth.Claims {
	t.Helper()
	perms, err := auth.NewPermissions([]string{"chat.>", "news"}, []string{"chat.u1"})
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Claims{
		Subject: "u1", TokenID: "t-9", Expires: time.Unix(1_900_000_000, 0),
		Permissions: perms, Info: json.RawMessage(`{"name":"Ann"}`), Channels: []string{"news"},
	}
}

// TestConnectAllow: a connect request carries what CONTROL.md lists,
// with POST and JSON; an allow gives the session its user, info,
// channels (each once) and expiry; data is not the connect's to set.
func TestConnectAllow(t *testing.T) {
	t.Parallel()
	b := newBackend(t, reply(http.StatusOK, `{"allow": true, "user": "u-42", "info": {"name": "Ann", "role": "admin"},
		"channels": ["news", "user.u-42", "news"], "expires": "2031-01-02T03:04:05Z", "data": "not for connect", "extra": 1}`))
	cfg := allHooks(b)
	cfg.Node = "node-1"
	h := newHooks(t, cfg)
	a, err := h.Call(t.Context(), hooks.Connect, hooks.Request{
		Session: "s-1",
		Remote:  "203.0.113.9",
		User:    "u1",
		Info:    json.RawMessage(`{"name":"Ann"}`),
		Claims:  hooks.ClaimsOf(testClaims(t)),
		Headers: map[string]string{"X-Tenant": "acme"},
		Cookies: map[string]string{"sid": "abc"},
	})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	want := hooks.Answer{
		User:     "u-42",
		Info:     json.RawMessage(`{"name": "Ann", "role": "admin"}`),
		Channels: []string{"news", "user.u-42"},
		Expires:  time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if a.User != want.User || string(a.Info) != string(want.Info) || !slices.Equal(a.Channels, want.Channels) ||
		!a.Expires.Equal(want.Expires) || a.Data != nil {
		t.Errorf("Answer = %+v, want %+v", a, want)
	}

	r := b.lastRequest()
	if r.method != http.MethodPost || r.path != "/connect" {
		t.Errorf("request %s %s, want POST /connect", r.method, r.path)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	wantBody := `{"hook": "connect", "session": "s-1", "node": "node-1", "remote": "203.0.113.9", "user": "u1",
		"info": {"name": "Ann"},
		"claims": {"sub": "u1", "jti": "t-9", "exp": 1900000000, "subscribe": ["chat.>", "news"], "publish": ["chat.u1"],
			"info": {"name": "Ann"}, "channels": ["news"]},
		"headers": {"X-Tenant": "acme"}, "cookies": {"sid": "abc"}}`
	if !jsonEqual(t, r.body, []byte(wantBody)) {
		t.Errorf("request body\n%s\nwant\n%s", r.body, wantBody)
	}
}

// TestRequestFieldsAbsent: what a request does not have is not in its
// JSON, node included when the config names none.
func TestRequestFieldsAbsent(t *testing.T) {
	t.Parallel()
	b := newBackend(t, allow)
	h := newHooks(t, allHooks(b))
	if _, err := h.Call(t.Context(), hooks.Subscribe, hooks.Request{Session: "s-2", Topic: "chat.*"}); err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(b.lastRequest().body, &got); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"hook", "session", "topic"}) {
		t.Errorf("request keys %v, want hook, session, topic", keys)
	}
	if string(got["hook"]) != `"subscribe"` || string(got["topic"]) != `"chat.*"` {
		t.Errorf("request %s", b.lastRequest().body)
	}
	if hooks.ClaimsOf(nil) != nil {
		t.Error("ClaimsOf(nil) != nil")
	}
}

// TestPublishData: a publish request carries the data; an allow may
// replace it with any JSON value, byte for byte; absent or null keeps it.
func TestPublishData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, answer, want string
	}{
		{"replaced by an object", `{"allow": true, "data": {"text": "hi ***", "checked": true}}`, `{"text": "hi ***", "checked": true}`},
		{"replaced by a string", `{"allow":true,"data":"x"}`, `"x"`},
		{"replaced by a number", `{"allow":true,"data":0}`, `0`},
		{"absent", `{"allow": true}`, ``},
		{"null", `{"allow": true, "data": null}`, ``},
		{"connect fields dropped", `{"allow": true, "user": "x", "channels": ["a"], "info": {}, "expires": "2031-01-02T03:04:05Z"}`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, reply(http.StatusOK, tc.answer))
			h := newHooks(t, allHooks(b))
			a, err := h.Call(t.Context(), hooks.Publish, hooks.Request{Session: "s", User: "u1", Topic: "chat.u1", Data: json.RawMessage(`{"text":"hi darn"}`)})
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if string(a.Data) != tc.want {
				t.Errorf("Data = %s, want %s", a.Data, tc.want)
			}
			if a.User != "" || a.Channels != nil || a.Info != nil || !a.Expires.IsZero() {
				t.Errorf("Answer = %+v, want only Data", a)
			}
			want := `{"hook":"publish","session":"s","user":"u1","topic":"chat.u1","data":{"text":"hi darn"}}`
			if body := b.lastRequest().body; !jsonEqual(t, body, []byte(want)) {
				t.Errorf("request %s, want %s", body, want)
			}
		})
	}
}

// TestRefreshAndSubscribeAnswers: refresh takes info and expires only;
// subscribe takes nothing but the decision.
func TestRefreshAndSubscribeAnswers(t *testing.T) {
	t.Parallel()
	b := newBackend(t, reply(http.StatusOK, `{"allow": true, "user": "other", "info": {"v": 2}, "channels": ["x"],
		"expires": "2030-06-01T00:00:00.5+02:00", "data": 1}`))
	h := newHooks(t, allHooks(b))
	a, err := h.Call(t.Context(), hooks.Refresh, hooks.Request{Session: "s", User: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	wantExp := time.Date(2030, 5, 31, 22, 0, 0, 5e8, time.UTC)
	if a.User != "" || string(a.Info) != `{"v": 2}` || a.Channels != nil || !a.Expires.Equal(wantExp) || a.Data != nil {
		t.Errorf("refresh Answer = %+v", a)
	}
	a, err = h.Call(t.Context(), hooks.Subscribe, hooks.Request{Session: "s", Topic: "news"})
	if err != nil {
		t.Fatal(err)
	}
	if a.User != "" || a.Info != nil || a.Channels != nil || !a.Expires.IsZero() || a.Data != nil {
		t.Errorf("subscribe Answer = %+v, want none of its fields", a)
	}
}

// TestDeny: a refusal reaches the client with the backend's code and
// message; a code that is not a client code is forbidden; an empty
// message is the code's; a long one is cut at 1 KiB on a character
// boundary. No refusal is retried.
func TestDeny(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 600) // 1200 bytes
	for _, tc := range []struct {
		name, code, message string
		wantCode, wantMsg   string
	}{
		{"forbidden", "forbidden", "members only", "forbidden", "members only"},
		{"bad_request", "bad_request", "topic must name a room", "bad_request", "topic must name a room"},
		{"unauthorized", "unauthorized", "log in again", "unauthorized", "log in again"},
		{"not_found", "not_found", "no such room", "not_found", "no such room"},
		{"rate_limited", "rate_limited", "slow down", "rate_limited", "slow down"},
		{"too_large", "too_large", "message too long", "too_large", "message too long"},
		{"unavailable is the node's", "unavailable", "try later", "forbidden", "try later"},
		{"internal is the node's", "internal", "oops", "forbidden", "oops"},
		{"unknown code", "teapot", "short and stout", "forbidden", "short and stout"},
		{"no code", "", "nope", "forbidden", "nope"},
		{"no message", "not_found", "", "not_found", "not found"},
		{"nothing", "", "", "forbidden", "forbidden"},
		{"long message", "forbidden", long, "forbidden", long[:1024]},
		{"long message cut inside a character", "forbidden", "x" + long, "forbidden", ("x" + long)[:1023]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, _ := json.Marshal(map[string]any{"allow": false, "code": tc.code, "message": tc.message, "user": "ignored"})
			b := newBackend(t, reply(http.StatusOK, string(body)))
			h := newHooks(t, allHooks(b))
			for _, k := range []hooks.Kind{hooks.Connect, hooks.Subscribe, hooks.Publish, hooks.Refresh} {
				a, err := h.Call(t.Context(), k, hooks.Request{Session: "s"})
				var be *broker.Error
				if !errors.As(err, &be) || !errors.Is(err, hooks.ErrDenied) {
					t.Fatalf("%v: err = %v, want a *broker.Error wrapping ErrDenied", k, err)
				}
				if be.Code != tc.wantCode || be.Message != tc.wantMsg || err.Error() != tc.wantMsg {
					t.Errorf("%v: refused with %s %q, want %s %q", k, be.Code, be.Message, tc.wantCode, tc.wantMsg)
				}
				if ce := broker.ClientError(err); ce.Code != tc.wantCode || ce.Message != tc.wantMsg {
					t.Errorf("%v: the client is told %s %q", k, ce.Code, ce.Message)
				}
				if errors.Is(err, broker.ErrUnavailable) {
					t.Errorf("%v: a refusal matches ErrUnavailable", k)
				}
				if a.User != "" {
					t.Errorf("%v: a refusal gave %+v", k, a)
				}
			}
			if n := b.requests.Load(); n != 4 {
				t.Errorf("the backend got %d requests, want 4 (no retry)", n)
			}
		})
	}
}

// TestInvalidAnswers: a 200 whose body is not a valid answer for the hook
// fails as unavailable, and is not retried.
func TestInvalidAnswers(t *testing.T) {
	t.Parallel()
	bigInfo := `{"a":"` + strings.Repeat("x", 1020) + `"}`
	var many []string
	for i := range auth.MaxChannels + 1 {
		many = append(many, fmt.Sprintf("c%d", i))
	}
	manyJSON, _ := json.Marshal(many)
	for _, tc := range []struct {
		name        string
		kind        hooks.Kind
		contentType string
		body        string
	}{
		{"an HTML page", hooks.Connect, "text/html", "<html><body>502 Bad Gateway</body></html>"},
		{"text", hooks.Subscribe, "text/plain", "OK"},
		{"empty", hooks.Connect, "application/json", ""},
		{"null", hooks.Connect, "application/json", "null"},
		{"no allow", hooks.Subscribe, "application/json", `{"code": "forbidden"}`},
		{"allow not a bool", hooks.Publish, "application/json", `{"allow": "yes"}`},
		{"an array", hooks.Connect, "application/json", `[{"allow": true}]`},
		{"trailing data", hooks.Connect, "application/json", `{"allow": true} {"allow": false}`},
		{"truncated", hooks.Refresh, "application/json", `{"allow": tr`},
		{"info not an object", hooks.Connect, "application/json", `{"allow": true, "info": [1]}`},
		{"info a string", hooks.Refresh, "application/json", `{"allow": true, "info": "x"}`},
		{"info over 1 KiB", hooks.Connect, "application/json", `{"allow": true, "info": ` + bigInfo + `}`},
		{"a wildcard channel", hooks.Connect, "application/json", `{"allow": true, "channels": ["news.*"]}`},
		{"an empty channel", hooks.Connect, "application/json", `{"allow": true, "channels": [""]}`},
		{"a channel not a string", hooks.Connect, "application/json", `{"allow": true, "channels": [1]}`},
		{"too many channels", hooks.Connect, "application/json", `{"allow": true, "channels": ` + string(manyJSON) + `}`},
		{"expires not RFC 3339", hooks.Connect, "application/json", `{"allow": true, "expires": "tomorrow"}`},
		{"expires a number", hooks.Refresh, "application/json", `{"allow": true, "expires": 1900000000}`},
		{"user too long", hooks.Connect, "application/json", `{"allow": true, "user": "` + strings.Repeat("u", 1025) + `"}`},
		{"code not a string", hooks.Subscribe, "application/json", `{"allow": false, "code": 403}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				_, _ = w.Write([]byte(tc.body))
			})
			h := newHooks(t, allHooks(b))
			_, err := h.Call(t.Context(), tc.kind, hooks.Request{Session: "s"})
			wantUnavailable(t, err, hooks.ErrBackend)
			if n := b.requests.Load(); n != 1 {
				t.Errorf("the backend got %d requests, want 1", n)
			}
		})
	}
}

// TestAnswerFieldsOfOtherHooksAreNotChecked: what a hook does not take is
// dropped unread, so that it cannot fail the call.
func TestAnswerFieldsOfOtherHooksAreNotChecked(t *testing.T) {
	t.Parallel()
	b := newBackend(t, reply(http.StatusOK, `{"allow": true, "channels": ["a.*"], "info": 3, "expires": "soon"}`))
	h := newHooks(t, allHooks(b))
	for _, k := range []hooks.Kind{hooks.Subscribe, hooks.Publish} {
		if _, err := h.Call(t.Context(), k, hooks.Request{}); err != nil {
			t.Errorf("%v: %v", k, err)
		}
	}
}

// TestRequestNotJSON: a request whose info or data is not JSON is the
// caller's fault: it is not sent, and the client is told "internal".
func TestRequestNotJSON(t *testing.T) {
	t.Parallel()
	b := newBackend(t, allow)
	h := newHooks(t, allHooks(b))
	for _, req := range []hooks.Request{{Data: json.RawMessage(`{"a":`)}, {Info: json.RawMessage(`nope`)}} {
		_, err := h.Call(t.Context(), hooks.Publish, req)
		if err == nil || errors.Is(err, broker.ErrUnavailable) || broker.ClientError(err).Code != protocol.CodeInternal {
			t.Errorf("Call(%+v) = %v, want an encoding error", req, err)
		}
	}
	if n := b.requests.Load(); n != 0 {
		t.Errorf("the backend got %d requests", n)
	}
}
