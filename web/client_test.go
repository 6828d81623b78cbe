package web_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/store/redis"
)

// seq returns from, from+1, …, to.
func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestSubscribeReceiveWildcardsAndPublish(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{})
	p := openPage(t, n.URL)
	p.eval(`start()`, nil)
	var ready []any
	p.eval(`Promise.all([sub('prices.eur.usd'), sub('prices.*.usd'), sub('prices.>'), sub('chat'), sub('bad..topic')])`, &ready)
	if len(ready) != 5 || ready[0] != true || ready[1] != true || ready[2] != true || ready[3] != true || ready[4] != "bad_request" {
		t.Fatalf("subscriptions answered %v, want four true and bad_request for the invalid topic", ready)
	}

	n.publish("prices.eur.usd", `{"bid": 1.0842}`)
	n.publish("prices.gbp.usd", `{"bid":1.27}`)
	n.publish("prices.eur.gbp.x", `"deep"`)
	n.publish("chat", `[1,2]`)
	n.publish("other", `null`)
	p.wait(`count('prices.eur.usd') === 1 && count('prices.*.usd') === 2 && count('prices.>') === 3 && count('chat') === 1`, 10*time.Second)

	r := p.rec()
	exact := r.Msgs["prices.eur.usd"][0]
	if exact.Topic != "prices.eur.usd" || exact.Offset != 1 || exact.Epoch == "" || exact.Sub != "" || string(exact.Data) != `{"bid":1.0842}` {
		t.Errorf("exact delivery %+v", exact)
	}
	var star []string
	for _, m := range r.Msgs["prices.*.usd"] {
		star = append(star, m.Topic+"@"+m.Sub)
	}
	if !slices.Equal(star, []string{"prices.eur.usd@prices.*.usd", "prices.gbp.usd@prices.*.usd"}) {
		t.Errorf("prices.*.usd got %v", star)
	}
	var deep []string
	for _, m := range r.Msgs["prices.>"] {
		deep = append(deep, m.Topic)
	}
	if !slices.Equal(deep, []string{"prices.eur.usd", "prices.gbp.usd", "prices.eur.gbp.x"}) {
		t.Errorf("prices.> got %v", deep)
	}
	if len(r.Errors) != 1 || r.Errors[0]["code"] != "bad_request" || r.Errors[0]["name"] != "bad..topic" {
		t.Errorf("errors %v, want one bad_request for bad..topic", r.Errors)
	}

	// Publish from the page (anonymous sessions may publish from loopback).
	var pub struct {
		ID     string `json:"id"`
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	p.eval(`c.publish('chat', {text: 'hi from the page'})`, &pub)
	if pub.ID == "" || pub.Offset != 2 || pub.Epoch == "" {
		t.Errorf("publish resolved %+v, want an id and offset 2", pub)
	}
	p.wait(`count('chat') === 2`, 10*time.Second)
	if got := string(p.rec().Msgs["chat"][1].Data); got != `{"text":"hi from the page"}` {
		t.Errorf("the page's own message came back as %s", got)
	}
	// history() reads what the topic still keeps: the two chat messages.
	var hist struct {
		Topic     string                  `json:"topic"`
		Position  struct{ Offset uint64 } `json:"position"`
		Recovered bool                    `json:"recovered"`
		Messages  []struct {
			Offset uint64          `json:"offset"`
			Data   json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	p.eval(`c.history('chat', {limit: 5, reverse: true})`, &hist)
	if hist.Topic != "chat" || hist.Position.Offset != 2 || !hist.Recovered || len(hist.Messages) != 2 ||
		hist.Messages[0].Offset != 2 || string(hist.Messages[0].Data) != `{"text":"hi from the page"}` || hist.Messages[1].Offset != 1 {
		t.Errorf("history resolved %+v, want chat's two messages, newest first", hist)
	}
	var rejected map[string]string
	p.eval(`c.publish('prices.*', 1).then(() => ({}), (e) => ({name: e.name, code: e.code, message: e.message}))`, &rejected)
	if rejected["name"] != "TidingsError" || rejected["code"] != "bad_request" || rejected["message"] == "" {
		t.Errorf("publishing to a pattern rejected with %v, want a TidingsError bad_request", rejected)
	}

	// Two handlers share one wire subscription; the last unsubscribe ends it.
	p.eval(`(() => { window.extra = []; window.h2 = c.subscribe('chat', (m) => extra.push(m.offset)); return h2.ready.then(() => true); })()`, nil)
	n.publish("chat", `3`)
	p.wait(`count('chat') === 3 && extra.length === 1`, 10*time.Second)
	p.eval(`(() => { subs['chat'].unsubscribe(); return true; })()`, nil)
	n.publish("chat", `4`)
	p.wait(`extra.length === 2`, 10*time.Second)
	p.eval(`(() => { h2.unsubscribe(); return c.publish('chat', 5); })()`, nil)
	n.publish("prices.eur.usd", `5`) // a marker after chat 5 on the same connection
	p.wait(`count('prices.eur.usd') === 2`, 10*time.Second)
	var after []int
	p.eval(`[count('chat'), extra.length]`, &after)
	if !slices.Equal(after, []int{3, 2}) {
		t.Errorf("after unsubscribing, chat deliveries %v, want [3 2]", after)
	}

	// close() ends the session with 1000 and for good.
	p.eval(`(() => { c.close(); return c.state; })()`, nil)
	r = p.rec()
	if last := r.Closes[len(r.Closes)-1]; last["code"] != float64(1000) || r.States[len(r.States)-1] != "closed" {
		t.Errorf("after close(): closes %v, states %v", r.Closes, r.States)
	}
	var closedErr string
	p.eval(`c.publish('chat', 1).then(() => '', (e) => e.code)`, &closedErr)
	if closedErr != "closed" {
		t.Errorf("publish after close rejected with %q, want closed", closedErr)
	}
}

// TestResumeAcrossNodeTakeover closes the page's session with 1001 by
// shutting node A down; node B, on the same Redis, takes over A's address.
// The page reconnects after a short random delay and backoff, and gets
// every message published while it was away, in order, once.
func TestResumeAcrossNodeTakeover(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	newStore := func() *redis.Store {
		st, err := redis.New(redis.Config{URL: srv.URL(), Prefix: "web-takeover:"})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	stA, stB := newStore(), newStore()
	a := startNode(t, nodeConfig{id: "node-a", store: stA, close: stA.Close})
	b := startNode(t, nodeConfig{id: "node-b", store: stB, close: stB.Close, unstarted: true})

	p := openPage(t, a.URL)
	p.eval(`start({goingAwayDelay: 400})`, nil)
	p.eval(`Promise.all([sub('t.x'), sub('t.>')])`, nil)
	for i := 1; i <= 5; i++ {
		a.publish("t.x", fmt.Sprintf(`{"n":%d}`, i))
	}
	p.wait(`count('t.x') === 5 && count('t.>') === 5`, 10*time.Second)

	// Node A goes away: 1001 to every session, then its listener closes.
	addr := strings.TrimPrefix(a.URL, "http://")
	a.stop()
	p.wait(`rec.closes.some((c) => c.code === 1001)`, 10*time.Second)

	// Published while the page has no node to connect to; the page's
	// attempts fail (1006) and back off until node B listens.
	for i := 6; i <= 10; i++ {
		b.publish("t.x", fmt.Sprintf(`{"n":%d}`, i))
	}
	p.wait(`rec.closes.filter((c) => c.code === 1006).length >= 2`, 10*time.Second)
	b.startOn(addr)
	p.wait(`rec.opens.length === 2 && count('t.x') === 10 && rec.resets.length === 1`, 15*time.Second)
	for i := 11; i <= 15; i++ {
		b.publish("t.x", fmt.Sprintf(`{"n":%d}`, i))
	}
	p.wait(`count('t.x') === 15 && count('t.>') === 10`, 10*time.Second)

	r := p.rec()
	t.Logf("page log %q; delays %v", r.Log, r.Delays)
	if got := p.offsets("t.x"); !slices.Equal(got, seq(1, 15)) {
		t.Fatalf("t.x delivered offsets %v, want 1…15 once each, in order", got)
	}
	epoch := r.Msgs["t.x"][0].Epoch
	for i, m := range r.Msgs["t.x"] {
		if m.Epoch != epoch || string(m.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
			t.Fatalf("t.x message %d: %+v", i, m)
		}
	}
	// The wildcard cannot resume: it is resubscribed, told so, and gets the
	// live stream.
	if got := p.offsets("t.>"); !slices.Equal(got, append(seq(1, 5), seq(11, 15)...)) {
		t.Errorf("t.> delivered offsets %v, want 1…5 then 11…15", got)
	}
	if len(r.Resets) != 1 || r.Resets[0]["name"] != "t.>" || r.Resets[0]["reason"] != "resubscribed" {
		t.Errorf("resets %v, want one 'resubscribed' for t.>", r.Resets)
	}
	if r.Opens[0]["node"] != "node-a" || r.Opens[1]["node"] != "node-b" {
		t.Errorf("opens %v, want node-a then node-b", r.Opens)
	}
	// The delays: first a random share (0.5 here) of goingAwayDelay after
	// the 1001, then full-jitter backoff from base 500 ms while no node
	// listens: 0.5·500, 0.5·1000, …
	if len(r.Delays) < 3 || r.Delays[0].Code != 1001 || r.Delays[0].Delay != 200 {
		t.Fatalf("delays %v, want 200 ms after the 1001, then at least two backoff delays", r.Delays)
	}
	for i, d := range r.Delays[1:] {
		if want := 0.5 * math.Min(30000, 500*math.Pow(2, float64(i))); d.Delay != want {
			t.Errorf("delay %d = %v ms, want %v (delays %v)", i+1, d.Delay, want, r.Delays)
		}
	}
}

// TestNotRecoveredCallsOnReset drops the connection while more messages
// than history holds are published: the resume answers recovered:false,
// the subscriber's onReset runs, and the live stream continues.
func TestNotRecoveredCallsOnReset(t *testing.T) {
	t.Parallel()
	st := memory.New(memory.Config{HistorySize: 3})
	n := startNode(t, nodeConfig{store: st, close: st.Close, origins: []string{"*"}})
	px := startProxy(t, strings.TrimPrefix(n.URL, "http://"))
	p := openPage(t, n.URL)
	p.eval(fmt.Sprintf(`start({url: %q})`, px.wsURL()), nil)
	p.eval(`sub('t.r')`, nil)
	n.publish("t.r", `1`)
	n.publish("t.r", `2`)
	p.wait(`count('t.r') === 2`, 10*time.Second)

	px.setRefuse(true)
	px.cut()
	p.wait(`rec.closes.length === 1`, 10*time.Second)
	for i := 3; i <= 10; i++ {
		n.publish("t.r", fmt.Sprint(i))
	}
	px.setRefuse(false)
	p.wait(`rec.resets.length === 1`, 15*time.Second)
	n.publish("t.r", `11`)
	n.publish("t.r", `12`)
	p.wait(`count('t.r') === 4`, 10*time.Second)

	r := p.rec()
	if got := p.offsets("t.r"); !slices.Equal(got, []uint64{1, 2, 11, 12}) {
		t.Errorf("t.r delivered offsets %v, want 1 2 11 12", got)
	}
	reset := r.Resets[0]
	if reset["name"] != "t.r" || reset["reason"] != "not_recovered" || reset["offset"] != float64(10) || reset["epoch"] != testkit.EpochOf(t, st, "t.r") {
		t.Errorf("onReset got %v, want not_recovered at offset 10 of epoch %s", reset, testkit.EpochOf(t, st, "t.r"))
	}
	var pos recPos
	p.eval(`subs['t.r'].position`, &pos)
	if pos.Offset != 12 || pos.Epoch != testkit.EpochOf(t, st, "t.r") {
		t.Errorf("subscription position %+v, want offset 12", pos)
	}
	if r.Closes[0]["code"] != float64(1006) {
		t.Errorf("a cut connection closed with %v, want 1006", r.Closes[0])
	}
}

// TestTokenExpiredCallsGetTokenFirst closes the session with 1008 "token
// expired", as the broker does when a session's JWT expires: the client
// gets a fresh token before it reconnects, then resumes.
func TestTokenExpiredCallsGetTokenFirst(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{origins: []string{"*"}})
	px := startProxy(t, strings.TrimPrefix(n.URL, "http://"))
	p := openPage(t, n.URL)
	p.eval(fmt.Sprintf(`(() => {
		let next = 1;
		return start({url: %q, token: 'tok-1', getToken: async () => { rec.log.push('getToken'); return 'tok-' + (++next); }});
	})()`, px.wsURL()), nil)
	p.eval(`sub('t.k')`, nil)
	for i := 1; i <= 3; i++ {
		n.publish("t.k", fmt.Sprint(i))
	}
	p.wait(`count('t.k') === 3`, 10*time.Second)

	px.closeWith(1008, "token expired")
	p.wait(`rec.closes.length === 1`, 10*time.Second)
	n.publish("t.k", `4`) // while away
	p.wait(`rec.opens.length === 2`, 15*time.Second)
	n.publish("t.k", `5`)
	p.wait(`count('t.k') === 5`, 10*time.Second)

	r := p.rec()
	if got := p.offsets("t.k"); !slices.Equal(got, seq(1, 5)) {
		t.Errorf("t.k delivered offsets %v, want 1…5", got)
	}
	want := []string{"open:" + nodeID(t), "close:1008:token expired", "getToken", "open:" + nodeID(t)}
	if !slices.Equal(r.Log, want) {
		t.Errorf("log %q, want %q", r.Log, want)
	}
	if got := n.seenTokens(); !slices.Equal(got, []string{"tok-1", "tok-2"}) {
		t.Errorf("the node saw tokens %q, want tok-1 then tok-2", got)
	}
}

func nodeID(t *testing.T) string {
	return "node-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
}

// TestHeartbeatWatchdog black-holes the connection right after the
// welcome: no frame arrives any more, the client's watchdog drops it after
// 2 × the server's heartbeat and reconnects.
func TestHeartbeatWatchdog(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{heartbeat: 200 * time.Millisecond, origins: []string{"*"}})
	px := startProxy(t, strings.TrimPrefix(n.URL, "http://"))
	px.holeNextConn()
	p := openPage(t, n.URL)
	start := time.Now()
	p.eval(fmt.Sprintf(`start({url: %q})`, px.wsURL()), nil)
	p.eval(`(() => { sub('t.h'); return true; })()`, nil)
	p.wait(`rec.opens.length === 2`, 10*time.Second)
	p.eval(`subs['t.h'].ready`, nil)
	elapsed := time.Since(start)
	n.publish("t.h", `"alive"`)
	p.wait(`count('t.h') === 1`, 10*time.Second)

	r := p.rec()
	if len(r.Closes) == 0 || r.Closes[0]["code"] != float64(4001) || r.Closes[0]["reason"] != "heartbeat timeout" {
		t.Fatalf("closes %v, want 4001 heartbeat timeout first", r.Closes)
	}
	if got := p.offsets("t.h"); !slices.Equal(got, []uint64{1}) {
		t.Errorf("t.h delivered offsets %v, want 1", got)
	}
	// Detection takes 2 heartbeats (400 ms), the reconnect 0.5 · 500 ms.
	if elapsed > 5*time.Second {
		t.Errorf("reconnecting took %v", elapsed)
	}
}

// TestRefusedConnectionStops answers every upgrade with 401: the page
// cannot see the status on the WebSocket, so the client asks the endpoint
// over HTTP, refreshes its token, and gives up after maxRefusals.
func TestRefusedConnectionStops(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{})
	n.mu.Lock()
	n.wsHook = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "unauthorized", "message": "bad token"}})
	}
	n.mu.Unlock()
	p := openPage(t, n.URL)
	p.eval(`(() => {
		let n = 0;
		return start({random: () => 0, getToken: () => { rec.log.push('getToken'); return 'tok-' + (++n); }});
	})()`, nil)
	p.wait(`c.state === 'closed'`, 15*time.Second)

	r := p.rec()
	var tokens int
	for _, l := range r.Log {
		if l == "getToken" {
			tokens++
		}
	}
	if tokens != 3 {
		t.Errorf("getToken called %d times, want 3 (first connection, then after each of two refusals): %v", tokens, r.Log)
	}
	if len(r.Errors) != 3 || r.Errors[2]["fatal"] != true || r.Errors[2]["code"] != "unauthorized" || r.Errors[2]["status"] != float64(401) {
		t.Errorf("errors %v, want three unauthorized (401), the last fatal", r.Errors)
	}
	if got := n.seenTokens(); !slices.Equal(got, []string{"tok-1", "tok-2", "tok-3"}) {
		t.Errorf("upgrade requests carried tokens %q, want tok-1…3", got)
	}
}

// TestBackoffSchedule runs the client's Backoff in Chromium with a fixed
// random source and clock.
func TestBackoffSchedule(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{})
	p := openPage(t, n.URL)
	var got struct {
		Delays           []float64 `json:"delays"`
		Custom           []float64 `json:"custom"`
		NotStable        float64   `json:"notStable"`
		AfterStable      float64   `json:"afterStable"`
		AttemptAfterBoth int       `json:"attempt"`
	}
	p.eval(`(() => {
		const rs = [0.1, 0.9, 0.5, 0.999, 0.25, 0.75, 0.3, 0.6, 0.05, 0.95, 0.5, 0.5, 0.5, 0.5];
		let i = 0, now = 1000;
		const b = new T.Backoff({random: () => rs[i++ % rs.length], now: () => now});
		const delays = [];
		for (let k = 0; k < 10; k++) delays.push(b.next());
		b.connected(); now += 59999; b.disconnected();
		const notStable = b.next();
		b.connected(); now += 60000; b.disconnected();
		const afterStable = b.next();
		const attempt = b.attempt;
		let j = 0;
		const c = new T.Backoff({base: 100, cap: 1000, random: () => [1, 0.5][j++ % 2]});
		const custom = [];
		for (let k = 0; k < 6; k++) custom.push(c.next());
		return {delays, custom, notStable, afterStable, attempt};
	})()`, &got)

	rs := []float64{0.1, 0.9, 0.5, 0.999, 0.25, 0.75, 0.3, 0.6, 0.05, 0.95}
	for k, r := range rs {
		want := r * math.Min(30000, 500*math.Pow(2, float64(k)))
		if math.Abs(got.Delays[k]-want) > 1e-9 {
			t.Errorf("delay %d = %v, want %v (all %v)", k, got.Delays[k], want, got.Delays)
		}
	}
	// 59.999 s up does not reset: attempt 10 is capped at 30 s.
	if got.NotStable != 0.5*30000 {
		t.Errorf("after a connection of 59.999 s the delay is %v, want 15000 (no reset)", got.NotStable)
	}
	// A stable minute starts again from base.
	if got.AfterStable != 0.5*500 || got.AttemptAfterBoth != 1 {
		t.Errorf("after a stable minute: delay %v, attempt %d; want 250 and 1", got.AfterStable, got.AttemptAfterBoth)
	}
	if want := []float64{100, 100, 400, 400, 1000, 500}; !slices.Equal(got.Custom, want) {
		t.Errorf("base 100 cap 1000: %v, want %v", got.Custom, want)
	}
}
