package web_test

// The client's fallback when WebSocket is blocked: a reverse proxy in
// front of a node refuses every WebSocket upgrade with 403, as some
// corporate proxies do, and passes plain HTTP. The client goes on over
// HTTP streaming (or Server-Sent Events), resumes after a drop, and stays
// on WebSocket where it works.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpstream"
	"github.com/tidings-io/tidings/transport/sse"
)

// blocker is a reverse proxy to a node that answers WebSocket upgrades
// with 403. It records the streams opened and the commands POSTed
// through it, can refuse new streams for a while (503), and can cut every
// connection the page holds to it.
type blocker struct {
	t   *testing.T
	srv *httptest.Server
	rp  *httputil.ReverseProxy
	tr  *http.Transport
	// sse, when set, serves /v1/sse here, in place of the node.
	sse http.Handler

	// mu guards the fields below.
	mu sync.Mutex
	// upgrades counts the upgrades refused.
	upgrades int
	// streams lists the request URIs of the stream GETs (/v1/stream,
	// /v1/sse), refused ones included.
	streams []string
	// posts lists the bodies POSTed to /v1/stream/<key>.
	posts []string
	// block answers stream GETs with 503.
	block bool
}

func startBlocker(t *testing.T, target string, sseHandler http.Handler) *blocker {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	b := &blocker{t: t, tr: &http.Transport{}, sse: sseHandler}
	// No X-Forwarded-For: the node sees a loopback peer and no other
	// client, so the page's anonymous session may publish.
	b.rp = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) }, FlushInterval: -1, Transport: b.tr}
	b.srv = httptest.NewServer(b)
	t.Cleanup(func() {
		b.srv.Close()
		b.tr.CloseIdleConnections()
	})
	return b
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		b.mu.Lock()
		b.upgrades++
		b.mu.Unlock()
		http.Error(w, "WebSocket is not allowed here", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodGet && (r.URL.Path == "/v1/stream" || r.URL.Path == "/v1/sse") {
		b.mu.Lock()
		b.streams = append(b.streams, r.URL.RequestURI())
		block := b.block
		b.mu.Unlock()
		if block {
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		}
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/stream/") {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.posts = append(b.posts, string(body))
		b.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if b.sse != nil && r.URL.Path == "/v1/sse" {
		b.sse.ServeHTTP(w, r)
		return
	}
	b.rp.ServeHTTP(w, r)
}

func (b *blocker) setBlock(on bool) {
	b.mu.Lock()
	b.block = on
	b.mu.Unlock()
}

// cut closes every connection of the page to the proxy, streams
// included, without a close frame.
func (b *blocker) cut() { b.srv.CloseClientConnections() }

func (b *blocker) seen() (upgrades int, streams, posts []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.upgrades, slices.Clone(b.streams), slices.Clone(b.posts)
}

// startWatched starts the client and records its state events as
// "state:transport" in window.trs.
func startWatched(p *page, opts string) {
	p.t.Helper()
	p.eval(`(() => {
		start(`+opts+`);
		window.trs = [];
		c.addEventListener('state', (e) => trs.push(e.state + ':' + e.transport));
		return true;
	})()`, nil)
}

// postedSubscribe returns the since of the last subscribe to topic among
// the commands POSTed, each body an array of commands.
func postedSubscribe(t *testing.T, posts []string, topic string) (since *recPos, found bool) {
	t.Helper()
	for _, body := range posts {
		var cmds []struct {
			Op    string  `json:"op"`
			Topic string  `json:"topic"`
			Since *recPos `json:"since"`
		}
		if err := json.Unmarshal([]byte(body), &cmds); err != nil {
			t.Fatalf("a POST body is not an array of commands: %q: %v", body, err)
		}
		for _, c := range cmds {
			if c.Op == "subscribe" && c.Topic == topic {
				since, found = c.Since, true
			}
		}
	}
	return since, found
}

func TestFallsBackToHTTPStreamingAndResumes(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{stream: true, origins: []string{"*"}})
	px := startBlocker(t, n.URL, nil)
	p := openPage(t, px.srv.URL)
	startWatched(p, "")
	p.wait(`c.state === 'open'`, 15*time.Second)
	var transport string
	p.eval(`c.transport`, &transport)
	if transport != "http-stream" {
		t.Fatalf("transport %q, want http-stream", transport)
	}
	if upgrades, streams, _ := px.seen(); upgrades != 1 || len(streams) != 1 {
		t.Fatalf("%d upgrades refused, streams %q: want one of each", upgrades, streams)
	}

	// It receives, and publishes.
	p.eval(`Promise.all([sub('t.a'), sub('t.b')])`, nil)
	for i := 1; i <= 5; i++ {
		n.publish("t.a", fmt.Sprintf(`{"n":%d}`, i))
	}
	var pub struct {
		ID     string `json:"id"`
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	p.eval(`c.publish('t.b', {from: 'the page'})`, &pub)
	if pub.ID == "" || pub.Offset != 1 || pub.Epoch == "" {
		t.Fatalf("publish resolved %+v", pub)
	}
	p.wait(`count('t.a') === 5 && count('t.b') === 1`, 10*time.Second)
	if got := string(p.rec().Msgs["t.b"][0].Data); got != `{"from":"the page"}` {
		t.Fatalf("the page's message came back as %s", got)
	}
	// Frames of every length encoding: 7 bits, 16 and 64, the last split
	// across many reads.
	p.eval(`sub('t.big')`, nil)
	for _, size := range []int{10, 300, 70000} {
		n.publish("t.big", `"`+strings.Repeat("x", size)+`"`)
	}
	var sizes []int
	p.wait(`count('t.big') === 3`, 10*time.Second)
	p.eval(`rec.msgs['t.big'].map((m) => m.data.length)`, &sizes)
	if !slices.Equal(sizes, []int{10, 300, 70000}) {
		t.Fatalf("big messages arrived with sizes %v", sizes)
	}

	// The proxy cuts the stream and refuses new ones for a while: the
	// node's session ends; what is published meanwhile comes on resume.
	// (The closes so far: the WebSocket's, refused.)
	px.setBlock(true)
	px.cut()
	p.wait(`rec.closes.length >= 2`, 10*time.Second)
	testkit.Eventually(t, 10*time.Second, func() error {
		if s := n.stream.Sessions(); s != 0 {
			return fmt.Errorf("the node still holds %d stream sessions", s)
		}
		return nil
	})
	for i := 6; i <= 10; i++ {
		n.publish("t.a", fmt.Sprintf(`{"n":%d}`, i))
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if _, streams, _ := px.seen(); len(streams) < 2 {
			return fmt.Errorf("no new stream attempt yet")
		}
		return nil
	})
	px.setBlock(false)
	p.wait(`rec.opens.length === 2 && count('t.a') === 10`, 20*time.Second)
	for i := 11; i <= 15; i++ {
		n.publish("t.a", fmt.Sprintf(`{"n":%d}`, i))
	}
	p.wait(`count('t.a') === 15`, 10*time.Second)

	r := p.rec()
	if got := p.offsets("t.a"); !slices.Equal(got, seq(1, 15)) {
		t.Fatalf("t.a delivered offsets %v, want 1…15 once each, in order", got)
	}
	for i, m := range r.Msgs["t.a"] {
		if string(m.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
			t.Fatalf("t.a message %d: %+v", i, m)
		}
	}
	if len(r.Resets) != 0 || r.Closes[1]["code"] != float64(1006) {
		t.Errorf("resets %v, closes %v: want none, and 1006 for the cut", r.Resets, r.Closes)
	}
	var trs []string
	p.eval(`trs`, &trs)
	opens := slices.DeleteFunc(slices.Clone(trs), func(s string) bool { return !strings.HasPrefix(s, "open:") })
	if !slices.Equal(opens, []string{"open:http-stream", "open:http-stream"}) {
		t.Errorf("state events %q: want every open on http-stream", trs)
	}
	p.eval(`c.transport`, &transport)
	if transport != "http-stream" {
		t.Errorf("after the drop the transport is %q", transport)
	}
	// On the wire: the resubscribe POSTed after the drop resumes after
	// the last offset the page had, and the node holds one session.
	_, _, posts := px.seen()
	since, ok := postedSubscribe(t, posts, "t.a")
	if !ok || since == nil || since.Offset != 5 || since.Epoch != r.Msgs["t.a"][0].Epoch {
		t.Errorf("the last subscribe to t.a POSTed since %+v, want offset 5 of the topic's epoch", since)
	}
	if s := n.stream.Sessions(); s != 1 {
		t.Errorf("the node holds %d stream sessions, want 1", s)
	}
}

func TestStaysOnWebSocketWhereItWorks(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{stream: true})
	p := openPage(t, n.URL)
	startWatched(p, "")
	p.eval(`sub('t.w')`, nil)
	n.publish("t.w", `1`)
	p.wait(`count('t.w') === 1`, 10*time.Second)
	var got struct {
		Transport string   `json:"transport"`
		States    []string `json:"states"`
		Streams   int      `json:"streams"`
	}
	p.eval(`({transport: c.transport, states: trs,
		streams: performance.getEntriesByType('resource').filter((e) => /\/v1\/(stream|sse)/.test(e.name)).length})`, &got)
	if got.Transport != "websocket" || !slices.Equal(got.States, []string{"open:websocket"}) || got.Streams != 0 {
		t.Fatalf("transport %q, states %q, %d stream requests: want websocket only", got.Transport, got.States, got.Streams)
	}
	if st := n.stream.Stats(); st.Sessions != 0 || len(st.CloseSent) != 0 {
		t.Fatalf("the stream server saw sessions: %+v", st)
	}
}

// TestFallsBackToSSE: with neither WebSocket nor HTTP streaming (not
// mounted), the client receives over Server-Sent Events, reopens the
// stream when it subscribes to more, refuses to publish, and resumes
// after a drop.
func TestFallsBackToSSE(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeConfig{origins: []string{"*"}})
	ssrv := sse.New(sse.Config{Settings: httpstream.Settings{NodeID: "sse-" + nodeID(t)}, Door: admit.New(admit.Config{Policy: admit.Policy{AllowedOrigins: []string{"*"}}, Transport: "sse"})}, n.b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ssrv.Shutdown(ctx)
	})
	px := startBlocker(t, n.URL, ssrv)
	p := openPage(t, px.srv.URL)
	// A stream names its topics: subscribe before the first connection.
	startWatched(p, "")
	p.eval(`subs.x = sub('s.a'), true`, nil)
	p.wait(`c.state === 'open'`, 20*time.Second)
	p.eval(`subs.x`, nil)
	var transport string
	p.eval(`c.transport`, &transport)
	if transport != "sse" {
		t.Fatalf("transport %q, want sse", transport)
	}
	for i := 1; i <= 3; i++ {
		n.publish("s.a", fmt.Sprint(i))
	}
	p.wait(`count('s.a') === 3`, 10*time.Second)

	// One more topic: the stream is reopened with both, from its cursor.
	p.eval(`sub('s.b')`, nil)
	_, streams, _ := px.seen()
	last, _ := url.ParseRequestURI(streams[len(streams)-1])
	if q := last.Query(); !slices.Equal(q["topic"], []string{"s.a", "s.b"}) || q.Get("last_event_id") == "" {
		t.Fatalf("the reopened stream %s: want topics s.a and s.b and a last_event_id", last)
	}
	n.publish("s.a", `4`)
	n.publish("s.b", `1`)
	p.wait(`count('s.a') === 4 && count('s.b') === 1`, 10*time.Second)

	var code string
	p.eval(`c.publish('s.a', 1).then(() => 'published', (e) => e.code)`, &code)
	if code != "unsupported" {
		t.Fatalf("publish over SSE: %q, want rejected with unsupported", code)
	}

	// A drop, streams refused for a while, then the resume.
	var closes int
	p.eval(`rec.closes.length`, &closes)
	px.setBlock(true)
	px.cut()
	p.wait(fmt.Sprintf(`rec.closes.length > %d`, closes), 10*time.Second)
	for i := 5; i <= 7; i++ {
		n.publish("s.a", fmt.Sprint(i))
	}
	n.publish("s.b", `2`)
	px.setBlock(false)
	p.wait(`rec.opens.length === 2 && count('s.a') === 7 && count('s.b') === 2`, 20*time.Second)
	n.publish("s.a", `8`)
	p.wait(`count('s.a') === 8`, 10*time.Second)
	if got := p.offsets("s.a"); !slices.Equal(got, seq(1, 8)) {
		t.Fatalf("s.a delivered offsets %v, want 1…8", got)
	}
	if got := p.offsets("s.b"); !slices.Equal(got, seq(1, 2)) {
		t.Fatalf("s.b delivered offsets %v, want 1 2", got)
	}
	if r := p.rec(); len(r.Resets) != 0 {
		t.Errorf("resets %v, want none", r.Resets)
	}
}

// TestHTTPStreamingRefreshesItsToken: over HTTP streaming the client
// renews its token on the open session (a refresh POSTed) and the session
// outlives the first token's exp.
func TestHTTPStreamingRefreshesItsToken(t *testing.T) {
	t.Parallel()
	n := tokenNodeWith(t, nodeConfig{stream: true, origins: []string{"*"}})
	px := startBlocker(t, n.URL, nil)
	p := openPage(t, px.srv.URL)
	exp := shortExp()
	tok1 := jwtToken(t, jwtKey, "u1", exp, "t.>")
	tok2 := jwtToken(t, jwtKey, "u1", time.Now().Add(time.Hour), "t.>")
	startWatched(p, `{token: `+js(tok1)+`, getToken: `+getTokens(tok2)+`}`)
	p.eval(`sub('t.r')`, nil)
	n.publish("t.r", `1`)
	n.publish("t.r", `2`)
	p.wait(`count('t.r') === 2`, 10*time.Second)
	// Half a second past the first token's exp, the session is still open.
	p.wait(fmt.Sprintf(`Date.now() > %d`, exp.Add(500*time.Millisecond).UnixMilli()), 10*time.Second)
	n.publish("t.r", `3`)
	p.wait(`count('t.r') === 3`, 10*time.Second)

	r := p.rec()
	if evalString(p, `c.transport`) != "http-stream" || len(r.Opens) != 1 || len(r.Closes) != 1 || len(r.Errors) != 0 {
		t.Fatalf("transport %s, opens %v, closes %v, errors %v: want one session over http-stream (one close: the refused WebSocket)",
			evalString(p, `c.transport`), r.Opens, r.Closes, r.Errors)
	}
	if got := p.offsets("t.r"); !slices.Equal(got, seq(1, 3)) {
		t.Errorf("offsets %v, want 1…3", got)
	}
	_, _, posts := px.seen()
	refreshed := false
	for _, body := range posts {
		refreshed = refreshed || strings.Contains(body, `"op":"refresh"`) && strings.Contains(body, tok2)
	}
	if !refreshed {
		t.Errorf("no refresh with the new token among the POSTs %q", posts)
	}
	if got := n.stream.Stats(); got.Sessions != 1 || got.Refused[limit.ReasonTokenExpired] != 0 {
		t.Errorf("stream stats %+v: want one session, never expired", got)
	}
}
