package ws_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// testJWTKey signs the tokens of these tests.
var testJWTKey = []byte("tidings-test-key-0123456789abcdef")

// token is a session token's claims; a zero exp means an hour from now.
type token struct {
	sub                string
	exp                time.Time
	subscribe, publish []string
	// info and channels are the identity claims, when not nil.
	info     any
	channels []string
}

// mint signs tk with testJWTKey. exp is sent in whole seconds, as the
// JWT library reads it.
func mint(t testing.TB, tk token) string {
	t.Helper()
	if tk.exp.IsZero() {
		tk.exp = time.Now().Add(time.Hour)
	}
	c := jwt.MapClaims{"exp": tk.exp.Unix()}
	if tk.sub != "" {
		c["sub"] = tk.sub
	}
	if tk.subscribe != nil {
		c["subscribe"] = tk.subscribe
	}
	if tk.publish != nil {
		c["publish"] = tk.publish
	}
	if tk.info != nil {
		c["info"] = tk.info
	}
	if tk.channels != nil {
		c["channels"] = tk.channels
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testJWTKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// withTokens configures cfg's server to require tokens signed with
// testJWTKey, with a leeway of a millisecond.
func withTokens(t testing.TB, cfg config) config {
	t.Helper()
	v, err := auth.New(auth.Config{HMACKey: testJWTKey, Leeway: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ws.Tokens = v
	return cfg
}

// refusal is the answer to a handshake that was not upgraded.
type refusal struct {
	status int
	header http.Header
	body   []byte
}

// handshake dials the server with rawQuery and header and returns the
// refusal, or a client when the upgrade succeeded.
func (h *harness) handshake(t testing.TB, rawQuery string, header http.Header) (*client, *refusal) {
	t.Helper()
	ref := &refusal{}
	d := ws.Dialer{
		Timeout: ioTimeout,
		OnStatusError: func(status int, reason []byte, r io.Reader) {
			resp, err := http.ReadResponse(bufio.NewReader(r), nil)
			if err != nil {
				t.Errorf("reading the refusal: %v", err)
				return
			}
			ref.header = resp.Header
			if ref.body, err = io.ReadAll(resp.Body); err != nil {
				t.Errorf("reading the refusal body: %v", err)
			}
		},
	}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	u := h.wsURL
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	conn, br, hs, err := d.Dial(context.Background(), u)
	var se ws.StatusError
	switch {
	case err == nil:
		t.Cleanup(func() { _ = conn.Close() })
		if br == nil {
			br = bufio.NewReader(conn)
		}
		return &client{t: t, conn: conn, r: br, hs: hs}, nil
	case errors.As(err, &se):
		ref.status = int(se)
		return nil, ref
	}
	t.Fatalf("dial: %v", err)
	return nil, nil
}

// expectRefused checks a refusal's status, JSON error code and, when
// message is not empty, that the message contains it.
func (r *refusal) expect(t testing.TB, status int, code, message string) {
	t.Helper()
	if r == nil {
		t.Fatalf("upgraded, want %d %s", status, code)
	}
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	checkErrorBody(t.(*testing.T), r.header, r.body, code)
	if message != "" && !strings.Contains(string(r.body), message) {
		t.Errorf("body %s, want it to mention %q", r.body, message)
	}
}

// dialToken opens a session with tk in the token query parameter and
// reads its welcome.
func (h *harness) dialToken(t testing.TB, tk string) *client {
	t.Helper()
	c, ref := h.handshake(t, "token="+url.QueryEscape(tk), nil)
	if ref != nil {
		t.Fatalf("handshake refused: %d %s", ref.status, ref.body)
	}
	c.expect("welcome")
	return c
}

// refused returns the server's refusal counter for reason.
func (h *harness) refused(reason limit.Reason) uint64 { return h.srv.Stats().Refused[reason] }

// wantRefused returns nil if the server's refusal counter for reason is
// want, and otherwise an error that says what it is.
func (h *harness) wantRefused(reason limit.Reason, want uint64) error {
	return wantCount("refused["+reason.String()+"]", h.refused(reason), want)
}

// admitted opens a session and reads its welcome, or returns the refusal
// of its handshake as an error: a condition for testkit.Eventually, to
// wait until the server has room for another session.
func (h *harness) admitted(t testing.TB) error {
	t.Helper()
	c, ref := h.handshake(t, "", nil)
	if ref != nil {
		return fmt.Errorf("handshake refused: %d %s", ref.status, ref.body)
	}
	c.expect("welcome")
	return nil
}

func TestTokenIsCheckedBeforeTheUpgrade(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	good := mint(t, token{sub: "u1", subscribe: []string{">"}})
	expired := mint(t, token{sub: "u1", exp: time.Now().Add(-time.Minute)})
	otherKey, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("another-key-another-key-another-k"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		query   string
		header  http.Header
		message string // "" when the upgrade succeeds
	}{
		{name: "no token", message: "token is missing"},
		{name: "empty token parameter", query: "token=", message: "token is missing"},
		{name: "expired token", query: "token=" + expired, message: "token expired"},
		{name: "token of another key", query: "token=" + otherKey, message: "signature"},
		{name: "malformed token", query: "token=abc.def.ghi", message: "malformed"},
		{name: "wrong scheme", header: http.Header{"Authorization": {"Basic " + good}}, message: "token is missing"},
		{name: "token parameter", query: "token=" + good},
		{name: "Authorization: Bearer", header: http.Header{"Authorization": {"Bearer " + good}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.refused(limit.ReasonToken)
			c, ref := h.handshake(t, tt.query, tt.header)
			if tt.message == "" {
				if ref != nil {
					t.Fatalf("refused with %d %s, want the upgrade", ref.status, ref.body)
				}
				c.expect("welcome")
				c.subscribe("any.topic")
				return
			}
			ref.expect(t, http.StatusUnauthorized, "unauthorized", tt.message)
			if !strings.HasPrefix(ref.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q, want the Bearer scheme", ref.header.Get("WWW-Authenticate"))
			}
			if got := h.refused(limit.ReasonToken); got != before+1 {
				t.Errorf("refused[token] = %d, want %d", got, before+1)
			}
		})
	}
	if n := h.b.Stats().Sessions; n > 2 {
		t.Errorf("%d sessions open, want at most the 2 upgraded", n)
	}
}

func TestTokenForPricesCannotSubscribeNewsNorEverything(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	c := h.dialToken(t, mint(t, token{sub: "trader", subscribe: []string{"prices.>"}}))
	for i, topic := range []string{"news.x", ">", "*", "prices", "*.eur"} {
		ref := "f" + strconv.Itoa(i)
		c.send(`{"op":"subscribe","topic":"` + topic + `","ref":"` + ref + `"}`)
		if e := c.expect("error"); e.Code != "forbidden" || e.Ref != ref || !strings.Contains(e.Message, topic) {
			t.Fatalf("subscribe %s: %s, want error forbidden naming the topic", topic, e)
		}
	}
	if got := h.refused(limit.ReasonForbidden); got != 5 {
		t.Errorf("refused[forbidden] = %d, want 5", got)
	}
	for _, topic := range []string{"prices.eur.usd", "prices.*", "prices.>", "prices.*.usd"} {
		c.subscribe(topic)
	}
	if st := h.b.Stats(); st.ExactSubscriptions != 1 || st.WildcardSubscriptions != 3 {
		t.Errorf("subscriptions %+v, want the 4 allowed ones only", st)
	}
	h.mustPublish(t, "news.x", `1`)
	m := h.mustPublish(t, "prices.eur.usd", `2`)
	if e := c.expect("message"); e.Topic != "prices.eur.usd" || e.ID != m.ID {
		t.Fatalf("first delivery %s, want prices.eur.usd (news.x was never subscribed)", e)
	}
}

// A token's sub is the session's user, named in the welcome; its channels
// claim subscribes the session (`subscribed` without ref, right after the
// welcome) to topics its subscribe claim alone would not allow; a token
// whose info or channels claim is not valid is refused at the upgrade.
func TestTokenIdentityAndServerSideSubscriptions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	tk := mint(t, token{sub: "ada", subscribe: []string{"news.>"}, info: map[string]any{"name": "Ada"},
		channels: []string{"room.1", "room.2", "room.1"}})
	c, ref := h.handshake(t, "token="+url.QueryEscape(tk), nil)
	if ref != nil {
		t.Fatalf("handshake refused: %d %s", ref.status, ref.body)
	}
	if w := c.expect("welcome"); w.User != "ada" {
		t.Fatalf("welcome %s, want user ada", w.Raw)
	}
	for _, topic := range []string{"room.1", "room.2"} {
		if s := c.expect("subscribed"); s.Topic != topic || s.Ref != "" || !strings.Contains(string(s.Raw), `"offset"`) {
			t.Fatalf("%s, want subscribed to %s without ref, with its position", s.Raw, topic)
		}
	}
	m := h.mustPublish(t, "room.2", `"hi"`)
	if e := c.expect("message"); e.Topic != "room.2" || e.ID != m.ID {
		t.Fatalf("%s, want the message on room.2", e.Raw)
	}
	c.send(`{"op":"subscribe","topic":"room.3","ref":"r3"}`)
	if e := c.expect("error"); e.Code != "forbidden" || e.Ref != "r3" {
		t.Fatalf("%s: a topic in neither claim must stay forbidden", e.Raw)
	}

	if _, w := newHarness(t, config{}).dialWelcome(t); strings.Contains(string(w.Raw), `"user"`) {
		t.Errorf("anonymous welcome %s names a user", w.Raw)
	}

	for _, bad := range []token{
		{sub: "x", info: "a string"},
		{sub: "x", info: map[string]any{"pad": strings.Repeat("x", auth.MaxInfoBytes)}},
		{sub: "x", channels: []string{"room.*"}},
	} {
		_, ref := h.handshake(t, "token="+url.QueryEscape(mint(t, bad)), nil)
		if ref == nil || ref.status != http.StatusUnauthorized || !strings.Contains(string(ref.body), "token") {
			t.Errorf("token %+v: %+v, want 401 naming the token", bad, ref)
		}
	}
}

func TestTokenPublishPermissions(t *testing.T) {
	t.Parallel()
	// Not on loopback: a token, not the address, grants publishing.
	h := newHarness(t, withTokens(t, config{remoteAddr: "192.0.2.10:5555"}))
	c := h.dialToken(t, mint(t, token{sub: "writer", subscribe: []string{"chat.>"}, publish: []string{"chat.room1", "chat.*.bots"}}))
	for _, tc := range []struct {
		topic, want string
	}{
		{"chat.room1", "published"}, {"chat.x.bots", "published"},
		{"chat.room2", "forbidden"}, {"news.x", "forbidden"}, {"chat.*", "bad_request"},
	} {
		c.send(`{"op":"publish","topic":"` + tc.topic + `","data":1,"ref":"p"}`)
		e := c.next()
		for e.Type == "message" {
			e = c.next()
		}
		if got := e.Type; tc.want == "published" && got != "published" || tc.want != "published" && e.Code != tc.want {
			t.Fatalf("publish to %s: %s, want %s", tc.topic, e, tc.want)
		}
	}
	if got := h.refused(limit.ReasonForbidden); got != 2 {
		t.Errorf("refused[forbidden] = %d, want 2", got)
	}
	if got := h.b.Stats().Published; got != 2 {
		t.Errorf("published %d messages, want 2", got)
	}
}

func TestExpiredTokenClosesTheLiveSessionWith1008(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	// Between half a second and a second and a half from now.
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second)
	c := h.dialToken(t, mint(t, token{sub: "u1", exp: exp, subscribe: []string{">"}}))
	c.ping("before expiry")
	c.expectClose(1008, "token expired")
	if late := time.Since(exp); late < 0 {
		t.Fatalf("closed %v before the token's expiry", -late)
	}
	testkit.Eventually(t, waitTimeout, func() error { return h.wantRefused(limit.ReasonTokenExpired, 1) })
	testkit.Eventually(t, waitTimeout, func() error { return wantCount("CloseSent[1008]", h.srv.Stats().CloseSent[1008], 1) })
}

func TestRefreshKeepsTheSessionPastItsFirstToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	first := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second)
	c := h.dialToken(t, mint(t, token{sub: "u1", exp: first, subscribe: []string{">"}}))
	next := time.Now().Add(time.Hour).Truncate(time.Second)
	c.send(`{"op":"refresh","ref":"r1","token":"` + mint(t, token{sub: "u1", exp: next, subscribe: []string{">"}}) + `"}`)
	e := c.expect("refreshed")
	if e.Ref != "r1" || !e.Has("expires") {
		t.Fatalf("refresh answer %s, want refreshed with ref r1 and expires", e)
	}
	var exp struct {
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal(e.Raw, &exp); err != nil || !exp.Expires.Equal(next) {
		t.Fatalf("expires %v (%v), want %v", exp.Expires, err, next)
	}
	// Until well past the first token's expiry the server sends nothing:
	// no close frame.
	_ = c.conn.SetReadDeadline(first.Add(300 * time.Millisecond))
	if _, err := readServerFrame(c.r); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past the first token's expiry: %v, want silence", err)
	}
	c.ping("after the first expiry")
	if got := h.refused(limit.ReasonTokenExpired); got != 0 {
		t.Errorf("refused[token_expired] = %d, want 0", got)
	}
}

// TestRefreshThatNoLongerAllowsATopicUnsubscribesIt: every subscription
// the new token does not cover is dropped, each announced by
// `unsubscribed` without ref, before the `refreshed` answer; nothing is
// delivered on them afterwards.
func TestRefreshThatNoLongerAllowsATopicUnsubscribesIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	c := h.dialToken(t, mint(t, token{sub: "u1", subscribe: []string{"prices.>", "news.>"}}))
	for _, topic := range []string{"prices.eur", "news.x", "news.*"} {
		c.subscribe(topic)
	}
	c.send(`{"op":"refresh","ref":"r2","token":"` + mint(t, token{sub: "u1", subscribe: []string{"prices.>", "news.y"}}) + `"}`)
	for _, want := range []string{"news.*", "news.x"} {
		e := c.expect("unsubscribed")
		if e.Topic != want || e.Has("ref") {
			t.Fatalf("got %s, want unsubscribed %s without ref", e, want)
		}
	}
	if e := c.expect("refreshed"); e.Ref != "r2" {
		t.Fatalf("refreshed %s, want ref r2", e)
	}
	h.mustPublish(t, "news.x", `1`)
	h.mustPublish(t, "prices.eur", `2`)
	if e := c.expect("message"); e.Topic != "prices.eur" {
		t.Fatalf("delivery %s, want prices.eur only", e)
	}
	if st := h.b.Stats(); st.ExactSubscriptions != 1 || st.WildcardSubscriptions != 0 {
		t.Errorf("subscriptions %+v, want prices.eur alone", st)
	}
	// The new token's rules apply to new subscriptions.
	c.send(`{"op":"subscribe","topic":"news.x","ref":"s"}`)
	if e := c.expect("error"); e.Code != "forbidden" {
		t.Fatalf("subscribe news.x after refresh: %s, want forbidden", e)
	}
	c.subscribe("news.y")
}

func TestRefreshRefusalsLeaveTheSessionAsItWas(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens(t, config{}))
	c := h.dialToken(t, mint(t, token{sub: "u1", subscribe: []string{"a.>"}}))
	c.subscribe("a.b")
	tests := []struct {
		name, cmd, code string
	}{
		{"expired token", `{"op":"refresh","ref":"x","token":"` + mint(t, token{sub: "u1", exp: time.Now().Add(-time.Minute)}) + `"}`, "unauthorized"},
		{"garbage token", `{"op":"refresh","ref":"x","token":"garbage"}`, "unauthorized"},
		{"another subject", `{"op":"refresh","ref":"x","token":"` + mint(t, token{sub: "u2", subscribe: []string{">"}}) + `"}`, "forbidden"},
		{"no token", `{"op":"refresh","ref":"x"}`, "bad_request"},
	}
	for _, tt := range tests {
		c.send(tt.cmd)
		if e := c.expect("error"); e.Code != tt.code || e.Ref != "x" {
			t.Fatalf("%s: %s, want error %s", tt.name, e, tt.code)
		}
	}
	if got := h.refused(limit.ReasonRefresh); got != 3 {
		t.Errorf("refused[refresh] = %d, want 3", got)
	}
	// Still subscribed, still under the first token's rules.
	h.mustPublish(t, "a.b", `1`)
	c.expect("message")
	c.send(`{"op":"subscribe","topic":"b.c","ref":"s"}`)
	if e := c.expect("error"); e.Code != "forbidden" {
		t.Fatalf("%s, want forbidden", e)
	}

	anon := newHarness(t, config{})
	ac, _ := anon.dialWelcome(t)
	ac.send(`{"op":"refresh","ref":"x","token":"t"}`)
	if e := ac.expect("error"); e.Code != "bad_request" {
		t.Fatalf("refresh without token authentication: %s, want bad_request", e)
	}
}

func TestAnonymousPublishUsesTheClientBehindTrustedProxies(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}})
	publish := func(c *client) event {
		c.send(`{"op":"publish","topic":"lo.t","data":1,"ref":"p"}`)
		return c.next()
	}
	direct, _ := h.dialWelcome(t)
	if e := publish(direct); e.Type != "published" {
		t.Fatalf("loopback client: %s, want published", e)
	}
	proxied, ref := h.handshake(t, "", http.Header{"X-Forwarded-For": {"203.0.113.9"}})
	if ref != nil {
		t.Fatal(ref.status)
	}
	proxied.expect("welcome")
	if e := publish(proxied); e.Code != "forbidden" {
		t.Fatalf("client 203.0.113.9 behind a trusted proxy on loopback: %s, want forbidden", e)
	}

	// An untrusted peer cannot claim loopback with the header.
	far := newHarness(t, config{remoteAddr: "203.0.113.5:4000"})
	spoof, ref := far.handshake(t, "", http.Header{"X-Forwarded-For": {"127.0.0.1"}})
	if ref != nil {
		t.Fatal(ref.status)
	}
	spoof.expect("welcome")
	if e := publish(spoof); e.Code != "forbidden" {
		t.Fatalf("untrusted peer claiming 127.0.0.1: %s, want forbidden", e)
	}

	// A loopback address that a trusted proxy names is not the node's
	// own host: only the TCP peer itself can be loopback.
	for _, header := range []http.Header{
		{"X-Forwarded-For": {"127.0.0.1"}},
		{"X-Forwarded-For": {"::1"}},
		{"Forwarded": {"for=127.0.0.1"}},
		{"Forwarded": {`for="[::1]:4711"`}},
		{"X-Forwarded-For": {"127.0.0.1"}, "Forwarded": {"for=127.0.0.1"}},
	} {
		c, ref := h.handshake(t, "", header)
		if ref != nil {
			t.Fatal(ref.status)
		}
		c.expect("welcome")
		if e := publish(c); e.Code != "forbidden" {
			t.Fatalf("client named loopback by a trusted proxy (%v): %s, want forbidden", header, e)
		}
	}
	// Nor does a proxy on the same host that is not trusted make its
	// clients local: its header says the client is elsewhere.
	untrusting := newHarness(t, config{})
	for _, header := range []http.Header{
		{"X-Forwarded-For": {"203.0.113.9"}},
		{"Forwarded": {"for=203.0.113.9"}},
		{"X-Real-Ip": {"203.0.113.9"}},
	} {
		c, ref := untrusting.handshake(t, "", header)
		if ref != nil {
			t.Fatal(ref.status)
		}
		c.expect("welcome")
		if e := publish(c); e.Code != "forbidden" {
			t.Fatalf("loopback peer, not trusted, with %v: %s, want forbidden", header, e)
		}
	}
	c, _ := untrusting.dialWelcome(t)
	if e := publish(c); e.Type != "published" {
		t.Fatalf("loopback client with no proxy header: %s, want published", e)
	}
}

// TestLoopbackOriginNeedsALocalClient: the default Origin rule takes a
// page on a loopback name for the node's own only from a local client
// (a loopback TCP peer, no proxy header): through a proxy, "localhost"
// names the browser's host.
func TestLoopbackOriginNeedsALocalClient(t *testing.T) {
	t.Parallel()
	for _, trusted := range [][]netip.Prefix{nil, {netip.MustParsePrefix("127.0.0.0/8")}} {
		h := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{TrustedProxies: trusted}}})
		addr := h.ts.Listener.Addr().String()
		_, port, _ := net.SplitHostPort(addr)
		for _, tc := range []struct {
			host, origin string
			header       http.Header
			want         int
		}{
			{"localhost:" + port, "http://localhost:" + port, nil, http.StatusSwitchingProtocols},
			{"127.0.0.1:" + port, "http://127.0.0.1:" + port, nil, http.StatusSwitchingProtocols},
			{"localhost:" + port, "http://localhost:" + port, http.Header{"X-Forwarded-For": {"198.51.100.7"}}, http.StatusForbidden},
			{"localhost:" + port, "http://localhost:" + port, http.Header{"X-Forwarded-For": {"127.0.0.1"}}, http.StatusForbidden},
			{"[::1]:" + port, "http://[::1]:" + port, http.Header{"Forwarded": {`for="[::1]"`}}, http.StatusForbidden},
			{"127.0.0.1:" + port, "http://127.0.0.1:" + port, http.Header{"Forwarded": {"for=127.0.0.1"}}, http.StatusForbidden},
			{"localhost:" + port, "http://localhost:" + port, http.Header{"X-Real-Ip": {"127.0.0.1"}}, http.StatusForbidden},
		} {
			header := http.Header{"Origin": {tc.origin}}
			for k, v := range tc.header {
				header[k] = v
			}
			d := ws.Dialer{
				Timeout: ioTimeout,
				NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var nd net.Dialer
					return nd.DialContext(ctx, network, addr)
				},
				Header: ws.HandshakeHeaderHTTP(header),
			}
			got := http.StatusSwitchingProtocols
			conn, _, _, err := d.Dial(context.Background(), "ws://"+tc.host+"/v1/ws")
			var se ws.StatusError
			switch {
			case err == nil:
				_ = conn.Close()
			case errors.As(err, &se):
				got = int(se)
			default:
				t.Fatalf("dial: %v", err)
			}
			if got != tc.want {
				t.Errorf("trusted %v: Host %s, Origin %s, %v: %d, want %d", trusted, tc.host, tc.origin, tc.header, got, tc.want)
			}
		}
	}
}

// TestCrowdWarning: more than 100 sessions from one TCP peer that no
// trusted proxy covers log the warning that a proxy may stand in front
// unnamed, once for the server's life; sessions from a trusted proxy, or
// clients it names, do not.
func TestCrowdWarning(t *testing.T) {
	t.Parallel()
	const crowd = 100
	const warning = "many sessions from one address; is a proxy in front without -trusted-proxies?"
	open := func(t *testing.T, trusted []netip.Prefix, n int, header func(i int) http.Header) *logRecords {
		logs := &logRecords{}
		h := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{TrustedProxies: trusted}, Logger: slog.New(slog.NewJSONHandler(logs, nil))}})
		for i := range n {
			c, ref := h.handshake(t, "", header(i))
			if ref != nil {
				t.Fatalf("session %d: %d %s", i, ref.status, ref.body)
			}
			c.expect("welcome")
		}
		return logs
	}
	warnings := func(t *testing.T, logs *logRecords) []map[string]any {
		var out []map[string]any
		for _, r := range logs.all(t) {
			if r["msg"] == warning {
				out = append(out, r)
			}
		}
		return out
	}
	noHeader := func(int) http.Header { return nil }

	t.Run("untrusted peer", func(t *testing.T) {
		t.Parallel()
		logs := open(t, nil, crowd+20, noHeader)
		got := warnings(t, logs)
		if len(got) != 1 {
			t.Fatalf("%d warnings, want 1: %v", len(got), got)
		}
		if got[0]["level"] != "WARN" || got[0]["addr"] != "127.0.0.1" || got[0]["sessions"] != float64(crowd+1) {
			t.Errorf("warning %v, want level WARN, addr 127.0.0.1, sessions %d", got[0], crowd+1)
		}
	})
	t.Run("at the threshold", func(t *testing.T) {
		t.Parallel()
		if got := warnings(t, open(t, nil, crowd, noHeader)); len(got) != 0 {
			t.Fatalf("%d sessions: warned %v", crowd, got)
		}
	})
	t.Run("trusted peer", func(t *testing.T) {
		t.Parallel()
		if got := warnings(t, open(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, crowd+1, noHeader)); len(got) != 0 {
			t.Fatalf("a trusted proxy's own sessions: warned %v", got)
		}
	})
	t.Run("forwarded clients", func(t *testing.T) {
		t.Parallel()
		one := func(int) http.Header { return http.Header{"X-Forwarded-For": {"198.51.100.1"}} }
		if got := warnings(t, open(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, crowd+1, one)); len(got) != 0 {
			t.Fatalf("one forwarded client with many sessions: warned %v", got)
		}
	})
}

func TestOriginPatterns(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{AllowedOrigins: []string{"https://*.example.com", "https://*.example.net:8443", "http://app.example.org"}}}})
	for origin, want := range map[string]int{
		"https://a.example.com":          101,
		"https://A.B.Example.COM":        101,
		"https://a.example.net:8443":     101,
		"http://app.example.org":         101,
		"https://example.com":            403,
		"http://a.example.com":           403,
		"https://a.example.com:8443":     403,
		"https://a.example.net":          403,
		"https://evilexample.com":        403,
		"https://a.example.com.evil.net": 403,
		"https://.example.com":           403,
		"https://a..example.com":         403,
		"https://a_b.example.com":        403,
		"https://u@a.example.com":        403,
		"https://a.example.com/path":     403,
		"null":                           403,
	} {
		before := h.refused(limit.ReasonOrigin)
		status, header, body := h.dialStatus(t, origin)
		if status != want {
			t.Errorf("Origin %q: %d, want %d", origin, status, want)
			continue
		}
		if status == http.StatusForbidden {
			checkErrorBody(t, header, body, "forbidden")
			if got := h.refused(limit.ReasonOrigin); got != before+1 {
				t.Errorf("Origin %q: refused[origin] = %d, want %d", origin, got, before+1)
			}
		}
	}
	for entry, ok := range map[string]bool{
		"*": true, "https://a.example": true, "https://*.example.com": true, "http://*.example.com:8080": true,
		"example.com": false, "ftp://a.example": false, "https://a.*.example.com": false, "https://*": false, "https://*.": false,
	} {
		if err := wsserver.ValidOrigin(entry); (err == nil) != ok {
			t.Errorf("ValidOrigin(%q) = %v, want ok %v", entry, err, ok)
		}
	}
}

func TestMaxSessionsRefusesWith503AndRetryAfter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{MaxSessions: 2}}})
	a, _ := h.dialWelcome(t)
	h.dialWelcome(t)
	_, ref := h.handshake(t, "", nil)
	ref.expect(t, http.StatusServiceUnavailable, "unavailable", "sessions")
	if ra := ref.header.Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After %q, want 5", ra)
	}
	if got := h.refused(limit.ReasonMaxSessions); got != 1 {
		t.Errorf("refused[max_sessions] = %d, want 1", got)
	}
	a.sendClose(closeBody(1000, ""))
	a.expectClose(1000, "")
	testkit.Eventually(t, waitTimeout, func() error { return h.admitted(t) })
}

func TestPerAddressSessionRate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{
		Policy: admit.Policy{
			IPConnRate:     0.01, // one more every 100s: the burst is all a test sees
			IPConnBurst:    3,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		},
	}})
	for i := 0; i < 3; i++ {
		h.dialWelcome(t)
	}
	_, ref := h.handshake(t, "", nil)
	ref.expect(t, http.StatusTooManyRequests, "rate_limited", "too many new connections")
	if ra, err := strconv.Atoi(ref.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want whole seconds ≥ 1", ref.header.Get("Retry-After"))
	}
	if got := h.refused(limit.ReasonIPRate); got != 1 {
		t.Errorf("refused[ip_rate] = %d, want 1", got)
	}
	// Another client behind the trusted proxy has its own allowance.
	c, ref := h.handshake(t, "", http.Header{"X-Forwarded-For": {"198.51.100.20"}})
	if ref != nil {
		t.Fatalf("another client address: %d %s", ref.status, ref.body)
	}
	c.expect("welcome")
}

func TestPerAddressConcurrentSessions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{IPMaxConns: 2}}})
	a, _ := h.dialWelcome(t)
	h.dialWelcome(t)
	_, ref := h.handshake(t, "", nil)
	ref.expect(t, http.StatusTooManyRequests, "rate_limited", "too many connections")
	if got := h.refused(limit.ReasonIPConns); got != 1 {
		t.Errorf("refused[ip_conns] = %d, want 1", got)
	}
	_ = a.conn.Close()
	testkit.Eventually(t, waitTimeout, func() error { return h.admitted(t) })
}

func TestSubscriptionLimitAnswersTooLarge(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{broker: broker.Config{MaxSubscriptions: 3}})
	c, _ := h.dialWelcome(t)
	for _, topic := range []string{"s.a", "s.b", "s.*"} {
		c.subscribe(topic)
	}
	c.send(`{"op":"subscribe","topic":"s.c","ref":"4th"}`)
	if e := c.expect("error"); e.Code != "too_large" || e.Ref != "4th" || !strings.Contains(e.Message, "3") {
		t.Fatalf("4th subscription: %s, want too_large naming the limit", e)
	}
	if got := h.refused(limit.ReasonSubscriptions); got != 1 {
		t.Errorf("refused[subscriptions] = %d, want 1", got)
	}
	c.send(`{"op":"unsubscribe","topic":"s.a"}`)
	c.expect("unsubscribed")
	c.subscribe("s.c")
}

// TestCommandRateLimit: commands over the rate get `error` `rate_limited`
// with their ref, until the allowance of refusals is used up; then the
// session is closed with 1008.
func TestCommandRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{OpLimits: session.OpLimits{OpRate: 0.01, OpBurst: 5, OpRefusals: 3}}})
	c, _ := h.dialWelcome(t)
	for i := 0; i < 20; i++ {
		cmd := `{"op":"ping","ref":"` + strconv.Itoa(i) + `"}`
		if err := c.tryWriteRaw(textHeader(len(cmd)), []byte(cmd)); err != nil {
			break // the server may close before all 20 are written
		}
	}
	before := c.expectClose(1008, "rate limit exceeded")
	var got []string
	for _, f := range before {
		e, err := decodeEvent(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Type+":"+e.Code+":"+e.Ref)
	}
	want := []string{"pong::0", "pong::1", "pong::2", "pong::3", "pong::4",
		"error:rate_limited:5", "error:rate_limited:6", "error:rate_limited:7"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frames before the close %v, want %v", got, want)
	}
	testkit.Eventually(t, waitTimeout, func() error {
		return errors.Join(h.wantRefused(limit.ReasonOpRate, 3), h.wantRefused(limit.ReasonOpAbuse, 1))
	})
}

// TestPingFramesCountTowardTheRate: a ping over the rate is not answered.
func TestPingFramesCountTowardTheRate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{OpLimits: session.OpLimits{OpRate: 0.01, OpBurst: 2, OpRefusals: 100}}})
	c, _ := h.dialWelcome(t)
	for i := 0; i < 4; i++ {
		c.raw(true, 0, ws.OpPing, true, []byte{byte('0' + i)})
	}
	c.send(`{"op":"ping","ref":"after"}`)
	for i := 0; i < 2; i++ {
		f, err := c.readFrame()
		if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != string(rune('0'+i)) {
			t.Fatalf("frame %d: %s (%v), want pong %d", i, describe(f), err, i)
		}
	}
	// Pings 2 and 3 went unanswered: the next frame is the command's error.
	if e := c.expect("error"); e.Code != "rate_limited" || e.Ref != "after" {
		t.Fatalf("%s, want error rate_limited", e)
	}
	if got := h.refused(limit.ReasonOpRate); got != 3 {
		t.Errorf("refused[op_rate] = %d, want 3", got)
	}
}

func TestRefusalCountersListEveryReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	got := h.srv.Stats().Refused
	for _, reason := range []limit.Reason{
		limit.ReasonOrigin, limit.ReasonToken, limit.ReasonMaxSessions, limit.ReasonIPRate,
		limit.ReasonIPConns, limit.ReasonOpRate, limit.ReasonOpAbuse, limit.ReasonForbidden,
		limit.ReasonSubscriptions, limit.ReasonTokenExpired, limit.ReasonRefresh,
	} {
		if n, ok := got[reason]; !ok || n != 0 {
			t.Errorf("Refused[%q] = %d (present %v), want 0", reason, n, ok)
		}
	}
}

// dialAs opens a WebSocket to the harness as a browser would after
// resolving host (name[:port], the request's Host header) to the test
// server's address, as DNS rebinding makes it, with origin as its Origin
// header. It returns 101 or the refusal's status.
func (h *harness) dialAs(t *testing.T, host, origin string) int {
	t.Helper()
	addr := h.ts.Listener.Addr().String()
	d := ws.Dialer{
		Timeout: ioTimeout,
		NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, addr)
		},
		Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}}),
	}
	conn, _, _, err := d.Dial(context.Background(), "ws://"+host+"/v1/ws")
	var se ws.StatusError
	switch {
	case err == nil:
		_ = conn.Close()
		return http.StatusSwitchingProtocols
	case errors.As(err, &se):
		return int(se)
	}
	t.Fatalf("dial %s: %v", host, err)
	return 0
}

// TestDefaultOriginRefusesDNSRebinding: with no allow-list, a page whose
// name was rebound to the broker's address (its Host header and its
// Origin both name the attacker's host) is refused, so that it cannot use
// the loopback publish right; pages on a loopback name reached on the
// same host and port still pass.
func TestDefaultOriginRefusesDNSRebinding(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	_, port, err := net.SplitHostPort(h.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, host, origin string
		want               int
	}{
		{"rebound name", "evil.example:" + port, "http://evil.example:" + port, http.StatusForbidden},
		{"rebound name, https origin", "evil.example:" + port, "https://evil.example:" + port, http.StatusForbidden},
		{"rebound name, upper case", "EVIL.example:" + port, "http://evil.EXAMPLE:" + port, http.StatusForbidden},
		{"localhost", "localhost:" + port, "http://localhost:" + port, http.StatusSwitchingProtocols},
		{"127.0.0.1", "127.0.0.1:" + port, "http://127.0.0.1:" + port, http.StatusSwitchingProtocols},
		{"another loopback address", "127.0.0.1:" + port, "http://127.0.0.2:" + port, http.StatusForbidden},
		{"loopback origin, rebound Host", "evil.example:" + port, "http://localhost:" + port, http.StatusForbidden},
		{"localhost on another port", "localhost:" + port, "http://localhost:1", http.StatusForbidden},
		{"a name under localhost's domain", "localhost.evil.example:" + port, "http://localhost.evil.example:" + port, http.StatusForbidden},
	} {
		before := h.refused(limit.ReasonOrigin)
		if got := h.dialAs(t, tc.host, tc.origin); got != tc.want {
			t.Errorf("%s: Host %s, Origin %s: %d, want %d", tc.name, tc.host, tc.origin, got, tc.want)
			continue
		}
		if tc.want == http.StatusForbidden {
			if got := h.refused(limit.ReasonOrigin); got != before+1 {
				t.Errorf("%s: refused[origin] = %d, want %d", tc.name, got, before+1)
			}
		}
	}

	// The node's public names, as configured, pass; nothing else does.
	pub := newHarness(t, config{ws: wsserver.Config{Policy: admit.Policy{PublicHosts: []string{"Broker.Example.", "[2001:db8::1]"}}}})
	_, port, err = net.SplitHostPort(pub.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{"broker.example:" + port, "http://broker.example:" + port, http.StatusSwitchingProtocols},
		{"broker.example", "https://BROKER.example", http.StatusSwitchingProtocols},
		{"[2001:db8::1]:" + port, "http://[2001:db8::1]:" + port, http.StatusSwitchingProtocols},
		{"localhost:" + port, "http://localhost:" + port, http.StatusSwitchingProtocols},
		{"evil.example:" + port, "http://evil.example:" + port, http.StatusForbidden},
		{"a.broker.example:" + port, "http://a.broker.example:" + port, http.StatusForbidden},
		{"broker.example:" + port, "http://broker.example:1", http.StatusForbidden},
	} {
		if got := pub.dialAs(t, tc.host, tc.origin); got != tc.want {
			t.Errorf("PublicHosts: Host %s, Origin %s: %d, want %d", tc.host, tc.origin, got, tc.want)
		}
	}
}
