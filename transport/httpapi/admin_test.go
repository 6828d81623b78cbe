package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	wstransport "github.com/tidings-io/tidings/transport/ws"
)

var jwtKey = []byte("admin-test-key-0123456789abcdef-0123456789")

// logBuffer collects a logger's JSON lines.
type logBuffer struct {
	testkit.Buffer
}

// lines returns the records whose msg is msg.
func (l *logBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// adminEnv is a node with a control plane, token authentication for
// sessions and the server API, and a captured log.
type adminEnv struct {
	api  *httpapi.API
	b    *broker.Broker
	srv  *httptest.Server
	logs *logBuffer
}

func newAdminEnv(t *testing.T, keys []auth.APIKey) *adminEnv {
	t.Helper()
	st := memory.New(memory.Config{})
	b := broker.New(broker.Config{}, st, wstransport.Encoder{})
	ctl := node.New(node.Config{Broker: b, Backend: st, ID: "n1", Presence: true, FlushInterval: 10 * time.Millisecond})
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{HMACKey: jwtKey})
	if err != nil {
		t.Fatal(err)
	}
	wsrv := wstransport.New(wstransport.Config{NodeID: "n1", Services: session.Services{Tokens: v, Registry: ctl, Presence: ctl}}, b)
	logs := &logBuffer{}
	api := httpapi.New(httpapi.Config{APIKeys: keys, Control: ctl, Tokens: v, Logger: slog.New(slog.NewJSONHandler(logs, nil))}, b, wsrv)
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wsrv.Shutdown(ctx)
		srv.Close()
		ctl.Close()
		_ = st.Close()
	})
	return &adminEnv{api: api, b: b, srv: srv, logs: logs}
}

func token(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	if claims["exp"] == nil {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	tk, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(jwtKey)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// call sends a request from remote through the API and returns the
// recorder.
func (e *adminEnv) call(method, path, body, remote string, header ...string) *httptest.ResponseRecorder {
	return serveJSON(e.api, method, path, body, remote, header...)
}

// serveJSON sends a JSON request from remote, with header's name, value
// pairs, through h and returns the recorder.
func serveJSON(h http.Handler, method, path, body, remote string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func (e *adminEnv) dial(t *testing.T, user string) *wstest.Client {
	t.Helper()
	tk := token(t, jwt.MapClaims{"sub": user, "subscribe": []string{">"}})
	return wstest.Dial(t, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws?token="+tk)
}

// The server API takes a JWT with the admin scope (scope "admin" among
// others, or admin: true) in place of an admin key, from any address; a
// token without it gets 403, a forged or expired one 401.
func TestServerAPIAcceptsAnAdminJWT(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, []auth.APIKey{{Name: "root", Secret: adminKey, Admin: true}})
	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "scope": "admin", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte("another-key-0123456789abcdef-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"scope", token(t, jwt.MapClaims{"sub": "ops", "scope": "read admin"}), http.StatusOK},
		{"admin claim", token(t, jwt.MapClaims{"sub": "ops", "admin": true}), http.StatusOK},
		{"no scope", token(t, jwt.MapClaims{"sub": "ops"}), http.StatusForbidden},
		{"other scope", token(t, jwt.MapClaims{"sub": "ops", "scope": "administrator read"}), http.StatusForbidden},
		{"forged", forged, http.StatusUnauthorized},
		{"expired", token(t, jwt.MapClaims{"sub": "ops", "scope": "admin", "exp": time.Now().Add(-time.Hour).Unix()}), http.StatusUnauthorized},
	} {
		for _, path := range []string{"/v1/info", "/v1/topics", "/v1/history?topic=a.b"} {
			if w := e.call(http.MethodGet, path, "", "203.0.113.9:1000", bearer(tc.token)...); w.Code != tc.status {
				t.Errorf("%s: GET %s answered %d %s, want %d", tc.name, path, w.Code, w.Body, tc.status)
			}
		}
	}
	w := e.call(http.MethodPost, "/v1/disconnect", `{"user":"u"}`, "203.0.113.9:1000", bearer(token(t, jwt.MapClaims{"sub": "ops", "scope": "admin"}))...)
	if w.Code != http.StatusOK {
		t.Fatalf("POST with an admin JWT: %d %s", w.Code, w.Body)
	}
	if lines := e.logs.lines("server API call"); len(lines) != 1 || lines[0]["caller"] != "jwt ops" {
		t.Fatalf("audit lines %v, want one naming jwt ops", lines)
	}
}

// Each POST of the server API, and a publish from the console, logs one
// "server API call" line with the path, the caller, the client's address
// and what it names.
func TestServerAPICallsAreAudited(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, []auth.APIKey{{Name: "root", Secret: adminKey, Admin: true}, {Name: "ops", Secret: opsKey}})
	for _, c := range []struct{ path, body string }{
		{"/v1/disconnect", `{"user":"alice","code":4100}`},
		{"/v1/unsubscribe", `{"session":"s1","topic":"a.b"}`},
		{"/v1/subscribe", `{"user":"alice","topic":"a.b"}`},
		{"/v1/revoke", `{"jti":"j1"}`},
	} {
		if w := e.call(http.MethodPost, c.path, c.body, "192.0.2.7:1000", bearer(adminKey)...); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", c.path, w.Code, w.Body)
		}
	}
	if w := e.call(http.MethodPost, "/v1/publish", `{"topic":"a.b","data":1}`, "192.0.2.7:1000", append(bearer(opsKey), httpapi.ConsoleHeader, "1")...); w.Code != http.StatusOK {
		t.Fatalf("publish: %d %s", w.Code, w.Body)
	}
	if w := e.call(http.MethodPost, "/v1/publish", `{"topic":"a.c","data":1}`, "192.0.2.7:1000", bearer(opsKey)...); w.Code != http.StatusOK {
		t.Fatalf("publish: %d %s", w.Code, w.Body)
	}
	if w := e.call(http.MethodGet, "/v1/info", "", "192.0.2.7:1000", bearer(adminKey)...); w.Code != http.StatusOK {
		t.Fatalf("info: %d %s", w.Code, w.Body)
	}
	lines := e.logs.lines("server API call")
	want := []map[string]any{
		{"path": "/v1/disconnect", "user": "alice", "code": float64(4100)},
		{"path": "/v1/unsubscribe", "session": "s1", "topic": "a.b"},
		{"path": "/v1/subscribe", "user": "alice", "topic": "a.b"},
		{"path": "/v1/revoke", "jti": "j1"},
		{"path": "/v1/publish", "topic": "a.b", "caller": "key ops"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d audit lines, want %d (GETs and publishes not from the console are not logged): %v", len(lines), len(want), lines)
	}
	for i, w := range want {
		got := lines[i]
		if got["level"] != "INFO" || got["client"] != "192.0.2.7" {
			t.Errorf("line %d: %v, want INFO from 192.0.2.7", i, got)
		}
		if _, ok := w["caller"]; !ok && got["caller"] != "key root" {
			t.Errorf("line %d: caller %v, want key root", i, got["caller"])
		}
		for k, v := range w {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, got[k], v, got)
			}
		}
	}
}

// GET /v1/sessions finds a user's sessions, or one by id, with their
// node, transport and subscriptions; it needs one of user and session
// and bounds limit.
func TestSessionsAPI(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, nil)
	c := e.dial(t, "alice")
	c.Subscribe("s.a", "s.b")
	get := func(q string) []node.SessionInfo {
		t.Helper()
		w := e.call(http.MethodGet, "/v1/sessions?"+q, "", "127.0.0.1:1000")
		var body struct{ Sessions []node.SessionInfo }
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Sessions == nil {
			t.Fatalf("sessions?%s: %d %s", q, w.Code, w.Body)
		}
		return body.Sessions
	}
	for _, q := range []string{"user=alice", "session=" + c.Welcome.Session} {
		got := get(q)
		if len(got) != 1 {
			t.Fatalf("%s: %+v", q, got)
		}
		s := got[0]
		if s.Session != c.Welcome.Session || s.User != "alice" || s.Node != "n1" || s.Transport != "websocket" ||
			!strings.HasPrefix(s.Remote, "127.0.0.1") || fmt.Sprint(s.Subscriptions) != "[s.a s.b]" || s.SubscriptionsTotal != 2 ||
			time.Since(s.ConnectedAt) > time.Minute {
			t.Errorf("%s: %+v", q, s)
		}
	}
	if got := get("user=bob"); len(got) != 0 {
		t.Errorf("user bob: %+v, want none", got)
	}
	for _, q := range []string{"", "user=a&session=b", "user=a&limit=0", "user=a&limit=1001", "user=a&limit=x"} {
		if w := e.call(http.MethodGet, "/v1/sessions?"+q, "", "127.0.0.1:1000"); w.Code != http.StatusBadRequest {
			t.Errorf("sessions?%s: %d %s, want 400", q, w.Code, w.Body)
		}
	}
}

// GET /v1/topics pages with offset; GET /v1/presence bounds its list with
// limit and counts every client in total.
func TestTopicsOffsetAndPresenceLimit(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, nil)
	for i := range 3 {
		c := e.dial(t, fmt.Sprint("u", i))
		// Session i subscribes to t.0 … t.i: t.j has 3-j subscribers,
		// t.0 is the busiest.
		for j := 0; j <= i; j++ {
			c.Subscribe(fmt.Sprint("t.", j))
		}
	}
	topics := func(q string) string {
		t.Helper()
		w := e.call(http.MethodGet, "/v1/topics?"+q, "", "127.0.0.1:1000")
		if w.Code != http.StatusOK {
			t.Fatalf("topics?%s: %d %s", q, w.Code, w.Body)
		}
		return strings.TrimSpace(w.Body.String())
	}
	testkit.Eventually(t, waitTimeout, func() error {
		if got := topics("limit=1&offset=1"); got != `{"topics":[{"topic":"t.1","subscribers":2}]}` {
			return fmt.Errorf("offset 1 limit 1: %s", got)
		}
		return nil
	})
	if got := topics("offset=3"); got != `{"topics":[]}` {
		t.Errorf("offset past the end: %s", got)
	}
	for _, q := range []string{"offset=-1", "offset=x", "offset=10001"} {
		if w := e.call(http.MethodGet, "/v1/topics?"+q, "", "127.0.0.1:1000"); w.Code != http.StatusBadRequest {
			t.Errorf("topics?%s: %d, want 400", q, w.Code)
		}
	}
	testkit.Eventually(t, waitTimeout, func() error {
		w := e.call(http.MethodGet, "/v1/presence?topic=t.0&limit=2", "", "127.0.0.1:1000")
		var body struct {
			Clients []map[string]any `json:"clients"`
			Total   int              `json:"total"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &body) != nil {
			return fmt.Errorf("presence: %d %s", w.Code, w.Body)
		}
		if len(body.Clients) != 2 || body.Total != 3 {
			return fmt.Errorf("presence limit 2: %d clients, total %d; want 2 of 3", len(body.Clients), body.Total)
		}
		return nil
	})
	if w := e.call(http.MethodGet, "/v1/presence?topic=t.0&limit=1001", "", "127.0.0.1:1000"); w.Code != http.StatusBadRequest {
		t.Errorf("presence limit 1001: %d, want 400", w.Code)
	}
}

// GET /v1/info/stream sends the nodes' figures as `event: info` at once
// and every second, and ends when the node begins to shut down; it takes
// an admin credential like GET /v1/info.
func TestInfoStream(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, []auth.APIKey{{Name: "root", Secret: adminKey, Admin: true}})
	if w := e.call(http.MethodGet, "/v1/info/stream", "", "127.0.0.1:1000"); w.Code != http.StatusUnauthorized {
		t.Fatalf("without a key: %d %s, want 401", w.Code, w.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/v1/info/stream", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	var times []time.Time
	for len(times) < 2 {
		ev, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		data, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		blank, _ := rd.ReadString('\n')
		if ev != "event: info\n" || !strings.HasPrefix(data, "data: ") || blank != "\n" {
			t.Fatalf("event %q %q %q", ev, data, blank)
		}
		var body struct {
			Nodes []struct {
				ID       string `json:"id"`
				Sessions int    `json:"sessions"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &body); err != nil || len(body.Nodes) != 1 || body.Nodes[0].ID != "n1" {
			t.Fatalf("data %q: %v", data, err)
		}
		times = append(times, time.Now())
	}
	if d := times[1].Sub(times[0]); d < httpapi.FeedInterval/2 {
		t.Errorf("two events %v apart, want about %v", d, httpapi.FeedInterval)
	}
	e.api.BeginShutdown()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatalf("the stream did not end cleanly at shutdown: %v", err)
	}
}
