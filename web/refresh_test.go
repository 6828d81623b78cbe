package web_test

// Token refresh on the open session: the client renews a JWT before its
// exp with the `refresh` op, falls back to the 1008 + reconnect path when
// that fails, and ends a subscription the refreshed token no longer allows.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/limit"
)

// jwtKey signs the tokens of these tests.
var jwtKey = []byte("tidings-web-test-key-0123456789abcdef")

// tokenNode starts a node that needs tokens signed with jwtKey, with a
// leeway of a millisecond: a session ends right at its token's exp.
func tokenNode(t *testing.T) *node {
	t.Helper()
	return tokenNodeWith(t, nodeConfig{})
}

// tokenNodeWith is tokenNode with the rest of cfg.
func tokenNodeWith(t *testing.T, cfg nodeConfig) *node {
	t.Helper()
	v, err := auth.New(auth.Config{HMACKey: jwtKey, Leeway: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg.tokens = v
	return startNode(t, cfg)
}

// jwtToken signs a token for sub, expiring at exp (whole seconds), that
// may subscribe to the patterns given.
func jwtToken(t *testing.T, key []byte, sub string, exp time.Time, subscribe ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "exp": exp.Unix(), "subscribe": subscribe,
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shortExp is an exp 3 to 4 s away, in whole seconds.
func shortExp() time.Time { return time.Unix(time.Now().Unix()+4, 0) }

// js quotes s as a JavaScript string.
func js(s string) string { return fmt.Sprintf("%q", s) }

// getTokens is a getToken that returns the next of tokens (a null throws),
// logging 'getToken' to rec.log each call.
func getTokens(tokens ...string) string {
	q := make([]string, len(tokens))
	for i, tk := range tokens {
		q[i] = "null"
		if tk != "" {
			q[i] = js(tk)
		}
	}
	return `(() => { const q = [` + strings.Join(q, ", ") + `]; return async () => {
		rec.log.push('getToken');
		const tk = q.shift();
		if (!tk) throw new Error('no token for you');
		return tk;
	}; })()`
}

func countLog(r rec, entry string) int {
	n := 0
	for _, l := range r.Log {
		if l == entry {
			n++
		}
	}
	return n
}

// TestTokenRefreshKeepsTheSessionOpen: a session whose token expires in 2
// to 3 s stays open past that time because the client sent a fresh token
// with `refresh`; the stream goes on in order, on the same connection.
func TestTokenRefreshKeepsTheSessionOpen(t *testing.T) {
	t.Parallel()
	n := tokenNode(t)
	p := openPage(t, n.URL)
	exp := shortExp()
	tok1 := jwtToken(t, jwtKey, "u1", exp, "t.>")
	tok2 := jwtToken(t, jwtKey, "u1", time.Now().Add(time.Hour), "t.>")
	p.eval(`start({token: `+js(tok1)+`, getToken: `+getTokens(tok2)+`})`, nil)
	var ok bool
	if p.eval(`sub('t.r')`, &ok); !ok {
		t.Fatalf("subscribe failed: %s", p.record())
	}
	n.publish("t.r", `1`)
	n.publish("t.r", `2`)
	p.wait(`count('t.r') === 2`, 5*time.Second)

	p.wait(`wire.recv.some((f) => f.type === 'refreshed')`, 5*time.Second)
	n.publish("t.r", `3`)
	p.wait(`count('t.r') === 3`, 5*time.Second)
	// Half a second past the old token's exp, the session is still open.
	p.wait(fmt.Sprintf(`Date.now() > %d`, exp.Add(500*time.Millisecond).UnixMilli()), 10*time.Second)
	n.publish("t.r", `4`)
	n.publish("t.r", `5`)
	p.wait(`count('t.r') === 5`, 5*time.Second)

	var w struct {
		Refresh   []map[string]any `json:"refresh"`
		Refreshed []map[string]any `json:"refreshed"`
		Session   string           `json:"session"`
	}
	p.eval(`({refresh: wire.sent.filter((f) => f.op === 'refresh'), refreshed: wire.recv.filter((f) => f.type === 'refreshed'), session: c.session})`, &w)
	r := p.rec()
	if len(r.Closes) != 0 || len(r.Opens) != 1 || evalString(p, `c.state`) != "open" {
		t.Errorf("closes %v, opens %v: want one connection, still open", r.Closes, r.Opens)
	}
	if got := evalString(p, `c.user`); got != "u1" {
		t.Errorf("c.user = %q, want the token's sub, u1 (welcome names it)", got)
	}
	if got := countLog(r, "getToken"); got != 1 {
		t.Errorf("getToken called %d times, want 1: %v", got, r.Log)
	}
	if len(w.Refresh) != 1 || w.Refresh[0]["token"] != tok2 {
		t.Errorf("refresh commands sent %v, want one with the token getToken returned", w.Refresh)
	}
	if len(w.Refreshed) != 1 || w.Refreshed[0]["ref"] != w.Refresh[0]["ref"] {
		t.Errorf("refreshed frames %v, want one answering the refresh", w.Refreshed)
	}
	if len(r.Errors) != 0 {
		t.Errorf("errors %v, want none", r.Errors)
	}
	if got := p.offsets("t.r"); !slices.Equal(got, seq(1, 5)) {
		t.Errorf("offsets %v, want 1…5", got)
	}
	if got := n.seenTokens(); !slices.Equal(got, []string{tok1}) {
		t.Errorf("upgrade requests carried %d tokens, want only the first", len(got))
	}
	if got := n.ws.Stats().Refused[limit.ReasonTokenExpired]; got != 0 {
		t.Errorf("refused[token_expired] = %d, want 0", got)
	}
}

// evalString evaluates a JavaScript expression that yields a string.
func evalString(p *page, expr string) string {
	p.t.Helper()
	var s string
	p.eval(expr, &s)
	return s
}

// TestTokenRefreshFailureReconnects: when the broker refuses the new token
// (or getToken fails), the session keeps its token and ends with 1008
// `token expired` at exp; the client then calls getToken and reconnects,
// resuming the stream.
func TestTokenRefreshFailureReconnects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// first is what getToken returns for the refresh ("" throws).
		first     func(t *testing.T) string
		errorCode string
		refused   uint64
	}{
		{"refused", func(t *testing.T) string {
			return jwtToken(t, []byte("another-key-another-key-another-k"), "u1", time.Now().Add(time.Hour), "t.>")
		}, "unauthorized", 1},
		{"other subject", func(t *testing.T) string {
			return jwtToken(t, jwtKey, "someone-else", time.Now().Add(time.Hour), "t.>")
		}, "forbidden", 1},
		{"getToken fails", func(*testing.T) string { return "" }, "token", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := tokenNode(t)
			p := openPage(t, n.URL)
			exp := shortExp()
			tok1 := jwtToken(t, jwtKey, "u1", exp, "t.>")
			good := jwtToken(t, jwtKey, "u1", time.Now().Add(time.Hour), "t.>")
			p.eval(`start({token: `+js(tok1)+`, getToken: `+getTokens(tc.first(t), good)+`})`, nil)
			var ok bool
			if p.eval(`sub('t.f')`, &ok); !ok {
				t.Fatalf("subscribe failed: %s", p.record())
			}
			n.publish("t.f", `1`)
			p.wait(`count('t.f') === 1`, 5*time.Second)
			p.wait(`rec.errors.length === 1`, 5*time.Second)
			// Published while the session is still open on the old token,
			// or while the client reconnects: delivered once either way.
			n.publish("t.f", `2`)
			p.wait(`rec.opens.length === 2 && c.state === 'open'`, 10*time.Second)
			n.publish("t.f", `3`)
			p.wait(`count('t.f') === 3`, 5*time.Second)

			r := p.rec()
			if r.Errors[0]["code"] != tc.errorCode {
				t.Errorf("error %v, want code %s", r.Errors[0], tc.errorCode)
			}
			if len(r.Closes) != 1 || r.Closes[0]["code"] != float64(1008) || r.Closes[0]["reason"] != "token expired" {
				t.Errorf("closes %v, want one 1008 token expired", r.Closes)
			}
			want := []string{"open:" + nodeID(t), "getToken", "error:" + tc.errorCode, "close:1008:token expired", "getToken", "open:" + nodeID(t)}
			if !slices.Equal(r.Log, want) {
				t.Errorf("log %q, want %q", r.Log, want)
			}
			if got := n.seenTokens(); !slices.Equal(got, []string{tok1, good}) {
				t.Errorf("upgrade requests carried %d tokens, want the first then the good one", len(got))
			}
			if got := p.offsets("t.f"); !slices.Equal(got, seq(1, 3)) {
				t.Errorf("offsets %v, want 1…3", got)
			}
			st := n.ws.Stats()
			if st.Refused[limit.ReasonRefresh] != tc.refused || st.Refused[limit.ReasonTokenExpired] != 1 {
				t.Errorf("refused %v, want refresh %d, token_expired 1", st.Refused, tc.refused)
			}
		})
	}
}

// TestRefreshedTokenEndsForbiddenSubscription: c.setToken on an open
// session sends `refresh`; a topic the new token does not allow is ended
// by the broker, and the subscriber's onError gets `forbidden`. The
// subscription stays gone, across a reconnect too; the others go on.
func TestRefreshedTokenEndsForbiddenSubscription(t *testing.T) {
	t.Parallel()
	n := tokenNode(t)
	p := openPage(t, n.URL)
	later := time.Now().Add(time.Hour)
	tok1 := jwtToken(t, jwtKey, "u1", later, "a.>", "b.x")
	tok2 := jwtToken(t, jwtKey, "u1", later, "a.>")
	p.eval(`start({token: `+js(tok1)+`})`, nil)
	var ok [2]bool
	p.eval(`Promise.all([sub('a.1'), sub('b.x')])`, &ok)
	if !ok[0] || !ok[1] {
		t.Fatalf("subscribe: %v: %s", ok, p.record())
	}
	n.publish("a.1", `1`)
	n.publish("b.x", `1`)
	p.wait(`count('a.1') === 1 && count('b.x') === 1`, 5*time.Second)

	p.eval(`c.setToken(`+js(tok2)+`), true`, nil)
	p.wait(`wire.recv.some((f) => f.type === 'refreshed')`, 5*time.Second)
	r := p.rec()
	if len(r.Errors) != 1 || r.Errors[0]["name"] != "b.x" || r.Errors[0]["code"] != "forbidden" ||
		!strings.Contains(fmt.Sprint(r.Errors[0]["message"]), "b.x") {
		t.Fatalf("errors %v, want b.x's onError with forbidden", r.Errors)
	}
	// The server's unsubscribed came before refreshed, without a ref.
	var frames []map[string]any
	p.eval(`wire.recv.filter((f) => f.type === 'unsubscribed' || f.type === 'refreshed')`, &frames)
	if len(frames) != 2 || frames[0]["type"] != "unsubscribed" || frames[0]["topic"] != "b.x" || frames[0]["ref"] != nil {
		t.Errorf("frames %v, want unsubscribed b.x without ref, then refreshed", frames)
	}

	p.eval(`subs['b.x'].unsubscribe(), true`, nil) // already gone: nothing to send
	n.publish("b.x", `2`)
	n.publish("a.1", `2`)
	p.wait(`count('a.1') === 2`, 5*time.Second)
	p.eval(`c.reconnect(), true`, nil)
	p.wait(`rec.opens.length === 2 && wire.sent.filter((f) => f.op === 'subscribe').length === 3`, 10*time.Second)
	p.wait(`wire.recv.filter((f) => f.type === 'subscribed').length === 3`, 5*time.Second)
	n.publish("a.1", `3`)
	p.wait(`count('a.1') === 3`, 5*time.Second)

	var sent []map[string]any
	p.eval(`wire.sent.filter((f) => f.op !== 'ping')`, &sent)
	var ops []string
	for _, f := range sent {
		ops = append(ops, fmt.Sprint(f["op"], " ", f["topic"]))
	}
	want := []string{"subscribe a.1", "subscribe b.x", "refresh <nil>", "subscribe a.1"}
	if !slices.Equal(ops, want) {
		t.Errorf("commands sent %q, want %q", ops, want)
	}
	if got := p.offsets("b.x"); !slices.Equal(got, []uint64{1}) {
		t.Errorf("b.x offsets %v, want only 1", got)
	}
	if got := p.offsets("a.1"); !slices.Equal(got, seq(1, 3)) {
		t.Errorf("a.1 offsets %v, want 1…3", got)
	}
	if got := n.seenTokens(); !slices.Equal(got, []string{tok1, tok2}) {
		t.Errorf("upgrade requests carried %d tokens, want tok1 then tok2 (setToken's)", len(got))
	}
}
