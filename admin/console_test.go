package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/wstest"
	redisstore "github.com/tidings-io/tidings/store/redis"
)

const (
	adminKey = "console-admin-key-0123456789abcdef"
	pubKey   = "console-publisher-key-0123456789ab"
)

var jwtKey = []byte("console-test-hmac-key-0123456789abcdef-0123")

// pageWait bounds the waits on what the page shows.
const pageWait = 15 * time.Second

// signIn enters cred in the log-in form and waits for the overview.
func (p *page) signIn(cred string) {
	p.t.Helper()
	p.wait(`document.querySelector("#login #credential") !== null`, pageWait)
	p.setValue("#credential", cred)
	p.submit("#credential")
	p.wait(`document.querySelector("#main[data-view=overview] #nodes") !== null`, pageWait)
}

// One node with an admin key: the console refuses to show anything
// without the key, signs in with it, shows the node and its publish rate
// moving when a publisher starts, lists the topics, tails a topic,
// publishes from the form to a raw WebSocket session, disconnects that
// session with the chosen code, and signs out.
func TestConsoleSingleNode(t *testing.T) {
	n := startNode(t, nodeConfig{id: "solo", keys: []auth.APIKey{{Name: "ops-console", Secret: adminKey, Admin: true}}})
	p := openConsole(t, n.URL, false)

	// Refused without a key: the log-in form, and the API itself says 401.
	p.wait(`document.querySelector("#login") !== null`, pageWait)
	var status int
	p.eval(`fetch("/v1/info").then(r => r.status)`, &status)
	if status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/info without a key from the page: %d, want 401", status)
	}
	var navHidden bool
	p.eval(`document.getElementById("nav").hidden`, &navHidden)
	if !navHidden {
		t.Fatal("the views are reachable before signing in")
	}
	p.screenshot("login")
	p.run(chromedp.SendKeys("#credential", "wrong-key-0123456789abcdef-0123"))
	p.submit("#credential")
	p.wait(`document.getElementById("login-error").textContent.includes("Sign-in failed")`, pageWait)
	p.setValue("#credential", "")
	p.signIn(adminKey)
	var stored string
	p.eval(`sessionStorage.getItem("tidings.admin.credential")`, &stored)
	if stored != adminKey {
		t.Fatalf("sessionStorage holds %q, want the key", stored)
	}

	// The node, then its publish rate moving once a publisher starts.
	p.wait(`document.querySelector('#nodes tr[data-node="solo"]') !== null`, pageWait)
	raw := wstest.Dial(t, n.wsURL(""))
	raw.Subscribe("chat.lobby", "chat.room1", "news.eu")
	n.publishing(t, "chat.lobby")
	p.wait(`parseFloat(document.querySelector('#nodes tr[data-node="solo"] [data-k=published_per_second]').textContent) > 10`, pageWait)
	p.wait(`document.querySelector('#chart-published_per_second polyline[data-series="solo"]').getAttribute("points").split(" ").length >= 8`, pageWait)
	p.run(chromedp.Click(`button[data-span="60"]`))
	p.wait(`document.querySelector('button[data-span="60"]').getAttribute("aria-pressed") === "true" &&
		document.querySelector("#chart-published_per_second text").textContent !== ""`, pageWait)
	p.screenshot("overview")
	p.run(chromedp.Click(`button[data-span="900"]`))

	// Topics, busiest first, then filtered by a pattern.
	p.run(chromedp.Navigate(n.URL + "/admin#/topics"))
	p.wait(`document.querySelectorAll('#topics tbody tr').length === 3`, pageWait)
	p.screenshot("topics")
	p.setValue("#pattern", "chat.>")
	p.submit("#pattern")
	p.wait(`location.hash === "#/topics?pattern=chat.%3E" && document.querySelectorAll('#topics tbody tr').length === 2`, pageWait)

	// Keyboard: Enter on a row opens the topic; the tail shows what is
	// published.
	p.run(chromedp.Focus(`#topics tbody tr[data-topic="chat.lobby"]`), chromedp.KeyEvent("\r"))
	p.wait(`location.hash === "#/topic/chat.lobby"`, pageWait)
	p.wait(`document.querySelectorAll("#tail li").length >= 3`, pageWait)
	p.wait(`document.querySelector("#presence-stats").textContent.includes("1 sessions")`, pageWait)

	// Publish from the form: the raw session gets it, the log names the
	// console.
	p.run(chromedp.Navigate(n.URL + "/admin#/topic/chat.room1"))
	p.wait(`document.getElementById("tail-status").textContent.startsWith("Subscribed")`, pageWait)
	p.setValue("#publish-data", `{"text": "not json`)
	p.submit("#publish-data")
	p.wait(`document.getElementById("publish-check").textContent.startsWith("Not valid JSON")`, pageWait)
	p.setValue("#publish-data", `{"text":"from the console"}`)
	p.submit("#publish-data")
	p.wait(`document.getElementById("publish-result").textContent.startsWith("Published at offset")`, pageWait)
	if f := nextBesides(raw, "chat.lobby"); f.Type != "message" || f.Topic != "chat.room1" || string(f.Data) != `{"text":"from the console"}` {
		t.Fatalf("the raw session got %s, want the console's message", f.Raw)
	}
	p.wait(`[...document.querySelectorAll("#tail li")].some(li => li.textContent.includes("from the console"))`, pageWait)
	p.submit("#h-limit")
	p.wait(`document.querySelectorAll("#history tbody tr").length === 1 && document.querySelector("#history tbody").textContent.includes("from the console")`, pageWait)
	p.screenshot("topic")

	// Sessions: find the raw session by id and disconnect it with 4321.
	p.run(chromedp.Navigate(n.URL + "/admin#/sessions?session=" + raw.Welcome.Session))
	p.wait(`document.querySelector('#sessions tr[data-session="`+raw.Welcome.Session+`"]') !== null`, pageWait)
	p.screenshot("sessions")

	// Unsubscribe it from news.eu, after a confirmation.
	p.run(chromedp.Click(`#sessions button[aria-label$="from news.eu"]`))
	p.wait(`document.querySelector("dialog[open]") !== null`, pageWait)
	p.run(chromedp.Click(`dialog[open] button[data-action=confirm]`))
	if f := nextBesides(raw, "chat.lobby"); f.Type != "unsubscribed" || f.Topic != "news.eu" || f.Ref != "" {
		t.Fatalf("the raw session got %s, want unsubscribed from news.eu without ref", f.Raw)
	}
	p.wait(`!document.querySelector("#sessions").textContent.includes("news.eu")`, pageWait)

	// Disconnect it with the code chosen in the dialog.
	p.run(chromedp.Click(`#sessions button[data-action=disconnect]`))
	p.wait(`document.querySelector("dialog[open] #dc-code") !== null`, pageWait)
	p.setValue("#dc-code", "4321")
	p.setValue("#dc-reason", "console test")
	p.run(chromedp.Click(`dialog[open] button[data-action=confirm]`))
	if ce := raw.WaitClose(); ce.Code != 4321 || ce.Reason != "console test" {
		t.Fatalf("the session closed with %d %q, want 4321 console test", ce.Code, ce.Reason)
	}
	// The session is gone from the list once it has ended: the page is
	// asked to look again until then.
	_ = raw.Conn.Close()
	p.wait(`(s => s && s.textContent.startsWith("0 live sessions"))(document.getElementById("sessions-summary")) ||
		(document.getElementById("sessions-find").requestSubmit(), false)`, pageWait)

	// Sign out forgets the key.
	p.run(chromedp.Click("#sign-out"))
	p.wait(`document.querySelector("#login") !== null && sessionStorage.getItem("tidings.admin.credential") === null`, pageWait)
}

// With no key configured, a loopback page needs no log-in.
func TestConsoleOnLoopbackNeedsNoKey(t *testing.T) {
	n := startNode(t, nodeConfig{id: "open"})
	p := openConsole(t, n.URL, true)
	p.wait(`document.querySelector('#nodes tr[data-node="open"]') !== null`, pageWait)
	var signOutHidden bool
	p.eval(`document.getElementById("sign-out").hidden`, &signOutHidden)
	if !signOutHidden {
		t.Error("sign out is offered with no credential to forget")
	}
	p.wait(`document.getElementById("feed-state").textContent.includes("live")`, pageWait)
	p.screenshot("overview-dark")

	// Keyboard only: from the skip link (the page's first stop), Tab
	// past Overview to Topics, Enter.
	p.eval(`document.querySelector(".skip").focus(), true`, nil)
	p.run(chromedp.KeyEvent("\t"), chromedp.KeyEvent("\t"))
	var focused string
	p.eval(`document.activeElement.textContent`, &focused)
	if focused != "Topics" {
		t.Fatalf("two Tabs after the skip link focus %q, want the Topics link", focused)
	}
	p.run(chromedp.KeyEvent("\r"))
	p.wait(`location.hash === "#/topics" && document.querySelector("#topics-filter") !== null`, pageWait)
}

// Two nodes on Redis, an admin JWT: the console on one node shows both,
// finds a user's session on the other node and disconnects it with the
// chosen code, and what it publishes reaches a raw session on the other
// node.
func TestConsoleTwoNodesOnRedis(t *testing.T) {
	rs := redistest.Start(t)
	v, err := auth.New(auth.Config{HMACKey: jwtKey})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for _, id := range []string{"node-a", "node-b"} {
		st, err := redisstore.New(redisstore.Config{URL: rs.URL(), Prefix: "admin-test:"})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, startNode(t, nodeConfig{id: id, store: st, tokens: v,
			keys: []auth.APIKey{{Name: "publisher", Secret: pubKey}}}))
	}
	sign := func(claims jwt.MapClaims) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		tk, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(jwtKey)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	adminJWT := sign(jwt.MapClaims{"sub": "operator", "scope": "admin", "subscribe": []string{">"}})
	raw := wstest.Dial(t, nodes[1].wsURL("token="+sign(jwt.MapClaims{"sub": "carol", "subscribe": []string{">"}})))
	raw.Subscribe("team.ops")

	p := openConsole(t, nodes[0].URL, false)
	// A JWT without the admin scope is refused.
	p.wait(`document.querySelector("#login #credential") !== null`, pageWait)
	p.run(chromedp.SendKeys("#credential", sign(jwt.MapClaims{"sub": "someone"})))
	p.submit("#credential")
	p.wait(`document.getElementById("login-error").textContent.includes("may not call the server API")`, pageWait)
	p.setValue("#credential", "")
	p.signIn(adminJWT)
	p.wait(`document.querySelector('#nodes tr[data-node="node-a"]') !== null && document.querySelector('#nodes tr[data-node="node-b"]') !== null`, pageWait)
	p.screenshot("overview-cluster")

	// The topic's tail on node a (the admin JWT is the client token) and a
	// publish from the form reach the session on node b.
	p.run(chromedp.Navigate(nodes[0].URL + "/admin#/topic/team.ops"))
	p.wait(`document.getElementById("tail-status").textContent.startsWith("Subscribed")`, pageWait)
	// The page publishes with the publisher key: an admin JWT may not
	// publish through /v1/publish.
	p.eval(`sessionStorage.setItem("tidings.admin.credential", `+fmt.Sprintf("%q", pubKey)+`), true`, nil)
	p.setValue("#publish-data", `{"shift":"night"}`)
	p.submit("#publish-data")
	p.wait(`document.getElementById("publish-result").textContent.startsWith("Published")`, pageWait)
	p.eval(`sessionStorage.setItem("tidings.admin.credential", `+fmt.Sprintf("%q", adminJWT)+`), true`, nil)
	if f := raw.Expect("message"); f.Topic != "team.ops" || string(f.Data) != `{"shift":"night"}` {
		t.Fatalf("node b's session got %s", f.Raw)
	}
	p.wait(`[...document.querySelectorAll("#tail li")].some(li => li.textContent.includes("night"))`, pageWait)

	// Find carol (on node b) from node a and disconnect all her sessions.
	p.run(chromedp.Navigate(nodes[0].URL + "/admin#/sessions?user=carol"))
	p.wait(`document.querySelector('#sessions tr[data-session="`+raw.Welcome.Session+`"]') !== null`, pageWait)
	var cells []string
	p.eval(`[...document.querySelectorAll('#sessions tr[data-session="`+raw.Welcome.Session+`"] td')].map(td => td.textContent)`, &cells)
	if len(cells) < 6 || cells[1] != "carol" || cells[2] != "node-b" || cells[3] != "websocket" || !strings.Contains(cells[5], "team.ops") {
		t.Fatalf("carol's row: %q", cells)
	}
	p.run(chromedp.Click(`button[data-action=disconnect-user]`))
	p.wait(`document.querySelector("dialog[open] #dc-code") !== null`, pageWait)
	p.setValue("#dc-code", "4567")
	p.run(chromedp.Click(`dialog[open] button[data-action=confirm]`))
	if ce := raw.WaitClose(); ce.Code != 4567 {
		t.Fatalf("carol's session closed with %d %q, want 4567", ce.Code, ce.Reason)
	}

	// Revoke carol: her new session on node b closes with 1008.
	again := wstest.Dial(t, nodes[1].wsURL("token="+sign(jwt.MapClaims{"sub": "carol", "jti": "carol-2"})))
	p.wait(`document.querySelector('#sessions tr[data-session="`+again.Welcome.Session+`"]') !== null ||
		(document.getElementById("sessions-find").requestSubmit(), false)`, pageWait)
	p.run(chromedp.Click(`button[data-action=revoke-user]`))
	p.wait(`document.querySelector("dialog[open]") !== null`, pageWait)
	p.run(chromedp.Click(`dialog[open] button[data-action=confirm]`))
	if ce := again.WaitClose(); ce.Code != 1008 || ce.Reason != "token revoked" {
		t.Fatalf("carol's session closed with %d %q, want 1008 token revoked", ce.Code, ce.Reason)
	}
}

// With 10 000 topics the Topics view paints its first page within a
// second, and asks the broker for one page only.
func TestTopicsViewAtSize(t *testing.T) {
	n := startNode(t, nodeConfig{id: "big"})
	ctx := context.Background()
	const topics, perSession = 10000, 1000
	for s := 0; s < topics/perSession; s++ {
		bs := n.b.NewSession()
		t.Cleanup(bs.Close)
		for i := 0; i < perSession; i++ {
			if err := bs.Subscribe(ctx, "", fmt.Sprintf("load.t%05d", s*perSession+i), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The console is open (its modules loaded, signed in); the time runs
	// from the switch to the Topics view to its first page on screen: the
	// request for one page and its rendering.
	p := openConsole(t, n.URL, false)
	p.wait(`document.querySelector("#nodes") !== null`, pageWait)
	p.eval(`performance.clearResourceTimings(), window.switched = performance.now(), location.hash = "#/topics", true`, nil)
	p.wait(`performance.getEntriesByName("topics-painted").length > 0`, pageWait)
	var timing struct {
		Painted float64  `json:"painted"`
		Rows    int      `json:"rows"`
		Asked   []string `json:"asked"`
	}
	p.eval(`({painted: performance.getEntriesByName("topics-painted")[0].startTime - window.switched,
		rows: document.querySelectorAll("#topics tbody tr").length,
		asked: performance.getEntriesByType("resource").map(e => e.name).filter(u => u.includes("/v1/topics"))})`, &timing)
	t.Logf("first page of %d topics painted %.0f ms after switching to the view", topics, timing.Painted)
	if timing.Painted > 1000 {
		t.Errorf("the Topics view painted %.0f ms after the switch, want under 1 s", timing.Painted)
	}
	if timing.Rows != 50 || len(timing.Asked) != 1 || !strings.Contains(timing.Asked[0], "limit=51") {
		t.Errorf("%d rows, requests %v; want one page of 50 and one request", timing.Rows, timing.Asked)
	}
	p.run(chromedp.Click(`button[data-action=next]`))
	p.wait(`document.querySelector("#topics tbody tr td").textContent === "51"`, pageWait)
}

// nextBesides returns c's next frame that is not a message of topic.
func nextBesides(c *wstest.Client, topic string) wstest.Frame {
	for {
		f := c.Next()
		if f.Type != "message" || f.Topic != topic {
			return f
		}
	}
}
