package web_test

// Helpers of the browser tests: one headless Chromium for the package (a
// tab per test), broker nodes started in process, the test page that
// loads tidings.js, and a TCP proxy that can cut, refuse, black-hole or
// close connections between the page and a node.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/browsertest"
	"github.com/tidings-io/tidings/internal/testkit"

	"github.com/chromedp/chromedp"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/httpstream"
	"github.com/tidings-io/tidings/transport/stream"
	"github.com/tidings-io/tidings/transport/ws"
	"github.com/tidings-io/tidings/web"
)

// browser is the package's Chromium, stopped by TestMain.
var browser browsertest.Browser

func TestMain(m *testing.M) { browsertest.Main(m, &browser) }

// tab opens a new tab in its own browser context (no shared storage or
// cache), closed at cleanup.
func tab(t *testing.T) context.Context {
	t.Helper()
	ctx := browser.Tab(t)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return ctx
}

// page is a tab showing a node's test page, with the harness loaded.
type page struct {
	t   *testing.T
	ctx context.Context
}

// openPage loads baseURL/test/ in a new tab and waits for the harness.
func openPage(t *testing.T, baseURL string) *page {
	t.Helper()
	p := &page{t: t, ctx: tab(t)}
	if err := chromedp.Do(p.ctx, chromedp.Navigate(baseURL+"/test/")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	p.wait("window.harnessReady === true", 10*time.Second)
	return p
}

// eval runs js (an expression; promises are awaited) and decodes its value
// into out when out is not nil.
func (p *page) eval(js string, out any) {
	p.t.Helper()
	if err := browsertest.Eval(p.ctx, js, out); err != nil {
		p.t.Fatalf("eval %s: %v\nrecord: %s", js, err, p.record())
	}
}

// wait polls the expression until it is truthy, failing after timeout with
// the page's record.
func (p *page) wait(expr string, timeout time.Duration) {
	p.t.Helper()
	if err := browsertest.Poll(p.ctx, expr, 20*time.Millisecond, timeout); err != nil {
		p.t.Fatalf("waiting for %s: %v\nrecord: %s", expr, err, p.record())
	}
}

// record returns what the harness recorded, for failure messages.
func (p *page) record() string {
	return browsertest.Text(p.ctx, `JSON.stringify(window.rec || null)`)
}

// rec is the harness's record, as JSON.
type rec struct {
	Log    []string            `json:"log"`
	Msgs   map[string][]recMsg `json:"msgs"`
	Resets []map[string]any    `json:"resets"`
	Errors []map[string]any    `json:"errors"`
	Delays []recDelay          `json:"delays"`
	Opens  []map[string]string `json:"opens"`
	Closes []map[string]any    `json:"closes"`
	States []string            `json:"states"`
	Extra  map[string]any      `json:"extra"`
	Subs   map[string]recPos   `json:"positions"`
}

type recMsg struct {
	Topic  string          `json:"topic"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
	Sub    string          `json:"sub"`
}

type recDelay struct {
	Delay float64 `json:"delay"`
	Code  int     `json:"code"`
}

type recPos struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

func (p *page) rec() rec {
	p.t.Helper()
	var r rec
	p.eval(`window.rec`, &r)
	return r
}

// offsets returns the offsets the page delivered to subscription name.
func (p *page) offsets(name string) []uint64 {
	p.t.Helper()
	var out []uint64
	for _, m := range p.rec().Msgs[name] {
		out = append(out, m.Offset)
	}
	return out
}

// harnessJS is the test page's module: it records everything a client
// does in window.rec, and every frame sent and received in window.wire
// (decoded). start(opts) creates the client as window.c (random fixed at
// 0.5 unless given); sub(pattern) subscribes and resolves when the broker
// has answered.
const harnessJS = `
import * as T from '/v1/client.js';
window.T = T;
const wire = window.wire = {sent: [], recv: []};
const WS = window.WebSocket;
window.WebSocket = class extends WS {
  constructor(...a) { super(...a); this.addEventListener('message', (e) => wire.recv.push(JSON.parse(e.data))); }
  send(d) { wire.sent.push(JSON.parse(d)); super.send(d); }
};
const rec = window.rec = {log: [], msgs: {}, resets: [], errors: [], delays: [], opens: [], closes: [], states: [], extra: {}};
window.subs = {};
window.start = (opts = {}) => {
  const c = new T.Tidings(opts.url, {random: () => 0.5, ...opts});
  c.addEventListener('open', (e) => { rec.log.push('open:' + e.node); rec.opens.push({node: e.node, session: e.session}); });
  c.addEventListener('close', (e) => { rec.log.push('close:' + e.code + ':' + e.reason); rec.closes.push({code: e.code, reason: e.reason}); });
  c.addEventListener('state', (e) => { rec.states.push(e.state); if (e.delay !== undefined) rec.delays.push({delay: e.delay, code: e.code}); });
  c.addEventListener('error', (e) => { rec.log.push('error:' + e.error.code); rec.errors.push({code: e.error.code, message: e.error.message, status: e.error.status, fatal: !!e.fatal}); });
  window.c = c;
  return true;
};
window.sub = (pattern, name = pattern, opts = {}) => {
  const s = c.subscribe(pattern, (m) => (rec.msgs[name] ??= []).push({topic: m.topic, offset: m.offset, epoch: m.epoch, data: m.data, sub: m.sub}), {
    onReset: (r) => { rec.log.push('reset:' + name + ':' + r.reason); rec.resets.push({name, ...r}); },
    onError: (e) => rec.errors.push({name, code: e.code, message: e.message}),
    ...opts,
  });
  window.subs[name] = s;
  return s.ready.then(() => true, (e) => e.code);
};
window.count = (name) => (rec.msgs[name] || []).length;
window.harnessReady = true;
`

const harnessHTML = `<!doctype html><html><head><meta charset="utf-8"><title>tidings test</title>
<script type="module" src="/test/harness.js"></script></head><body>test</body></html>`

// testPages serves the harness under /test/.
func testPages(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/test/harness.js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = io.WriteString(w, harnessJS)
	case "/test/", "/test/index.html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, harnessHTML)
	default:
		http.NotFound(w, r)
	}
}

// node is one broker node behind an httptest server, with the web
// handlers mounted as cmd/broker mounts them.
type node struct {
	t     *testing.T
	b     *broker.Broker
	ws    *ws.Server
	api   *httpapi.API
	srv   *httptest.Server
	ctl   *ctlnode.Node // nil without nodeConfig.control
	close func() error  // closes the store
	// URL is the node's http://host:port.
	URL string

	// mu guards tokens.
	mu sync.Mutex
	// tokens lists the token query parameter of every upgrade request.
	tokens []string
	// wsHook, when set, answers /v1/ws instead of the node.
	wsHook http.HandlerFunc

	stopped atomic.Bool

	// stream serves /v1/stream and /v1/stream/; nil without
	// nodeConfig.stream.
	stream *stream.Server
}

type nodeConfig struct {
	id        string
	store     broker.Store
	close     func() error
	heartbeat time.Duration
	// origins: the WebSocket Origin allow-list ("*" when a proxy sits in
	// between: the page's origin is then not the host it connects to).
	origins []string
	// unstarted leaves the server for the caller to start.
	unstarted bool
	// tokens, when set, makes sessions need a token it verifies
	// (ws.Config.Tokens).
	tokens ws.TokenVerifier
	// control runs the node's control plane with presence and join/leave
	// on (the store must be a control.Backend: the default one is).
	control bool
	// hooks, when set, are the node's backend hooks.
	hooks *hooks.Hooks
	// compression turns permessage-deflate on (ws.Config.Compression).
	compression bool
	// stream mounts the HTTP streaming transport at /v1/stream.
	stream bool
}

// startNode starts a node; it is stopped at cleanup. With no store it
// uses the in-memory one.
func startNode(t *testing.T, cfg nodeConfig) *node {
	t.Helper()
	if cfg.store == nil {
		st := memory.New(memory.Config{})
		cfg.store, cfg.close = st, st.Close
	}
	if cfg.id == "" {
		cfg.id = "node-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	}
	b := broker.New(broker.Config{}, cfg.store, ws.Encoder{})
	wcfg := ws.Config{NodeID: cfg.id, Heartbeat: cfg.heartbeat, CloseTimeout: 2 * time.Second, Compression: cfg.compression,
		Policy: admit.Policy{AllowedOrigins: cfg.origins}, Services: session.Services{Tokens: cfg.tokens, Hooks: cfg.hooks}}
	var ctl *ctlnode.Node
	if cfg.control {
		ctl = ctlnode.New(ctlnode.Config{Broker: b, Backend: cfg.store.(control.Backend), ID: cfg.id, Presence: true, JoinLeave: true})
		if err := ctl.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		wcfg.Registry, wcfg.Presence = ctl, ctl
	}
	wsrv := ws.New(wcfg, b)
	api := httpapi.New(httpapi.Config{Control: ctl}, b, wsrv)
	n := &node{t: t, b: b, ws: wsrv, api: api, ctl: ctl, close: cfg.close}
	if cfg.stream {
		n.stream = stream.New(stream.Config{Settings: httpstream.Settings{NodeID: cfg.id, Heartbeat: cfg.heartbeat}, Services: wcfg.Services,
			Door: admit.New(admit.Config{Policy: wcfg.Policy, Tokens: cfg.tokens, Hooks: cfg.hooks, Transport: "http-stream"})}, b)
	}

	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.HandleFunc("/v1/ws", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		hook := n.wsHook
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			n.tokens = append(n.tokens, r.URL.Query().Get("token"))
		}
		n.mu.Unlock()
		if hook != nil {
			hook(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
	if n.stream != nil {
		mux.Handle("/v1/stream", n.stream)
		mux.Handle("/v1/stream/", n.stream)
	}
	mux.Handle("/v1/client.js", web.ClientHandler())
	mux.Handle("/demo", web.DemoHandler())
	mux.Handle("/demo/", web.DemoHandler())
	mux.HandleFunc("/test/", testPages)

	n.srv = httptest.NewUnstartedServer(mux)
	if !cfg.unstarted {
		n.srv.Start()
		n.URL = n.srv.URL
	}
	t.Cleanup(n.stop)
	return n
}

// startOn starts an unstarted node's server on addr.
func (n *node) startOn(addr string) {
	n.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		n.t.Fatalf("listening on %s: %v", addr, err)
	}
	_ = n.srv.Listener.Close()
	n.srv.Listener = ln
	n.srv.Start()
	n.URL = n.srv.URL
}

// stop shuts the node down as cmd/broker does: readiness fails, sessions
// get 1001 after their queues, then the listener and the store close.
func (n *node) stop() {
	if n.stopped.Swap(true) {
		return
	}
	n.api.BeginShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.ws.Shutdown(ctx)
	if n.stream != nil {
		_ = n.stream.Shutdown(ctx)
	}
	if n.ctl != nil {
		n.ctl.Close()
	}
	if n.srv.URL != "" {
		n.srv.Close()
	} else {
		_ = n.srv.Listener.Close()
	}
	if n.close != nil {
		_ = n.close()
	}
}

// publish publishes data (JSON) to topic through the node's broker.
func (n *node) publish(topic, data string) *broker.Message {
	n.t.Helper()
	return testkit.Publish(n.t, n.b, topic, data)
}

func (n *node) seenTokens() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.tokens...)
}

// proxy is a TCP proxy between the page and a node. It reads the
// server-to-client stream frame by frame (after the HTTP response), so it
// can stop forwarding right after the welcome frame or put a close frame
// of its own between two frames.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	// mu guards conns, refuse and holeNext.
	mu       sync.Mutex
	conns    map[*pconn]struct{}
	refuse   bool
	holeNext bool
	accepted int
}

type pconn struct {
	client, server net.Conn
	// wmu orders the writes to client: whole frames, or an injected close.
	wmu      sync.Mutex
	hole     bool        // black-hole after the first frame; set at accept
	holed    atomic.Bool // now discarding both ways
	injected atomic.Bool // a close frame was injected; the server side is gone
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[*pconn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// wsURL returns the proxied WebSocket endpoint.
func (p *proxy) wsURL() string { return "ws://" + p.ln.Addr().String() + "/v1/ws" }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refuse, hole := p.refuse, p.holeNext
		p.holeNext = false
		p.mu.Unlock()
		if refuse {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pc := &pconn{client: c, server: s, hole: hole}
		p.mu.Lock()
		p.conns[pc] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.up(pc)
		go p.down(pc)
	}
}

// up copies client → server.
func (p *proxy) up(pc *pconn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := pc.client.Read(buf)
		if pc.injected.Load() {
			// The page answered the injected close (or went away).
			_ = pc.client.Close()
			p.forget(pc)
			return
		}
		if n > 0 && !pc.holed.Load() {
			if _, werr := pc.server.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			_ = pc.client.Close()
			_ = pc.server.Close()
			p.forget(pc)
			return
		}
	}
}

// down copies server → client: the HTTP response, then whole frames.
func (p *proxy) down(pc *pconn) {
	defer p.wg.Done()
	defer func() {
		// A black hole hides the server's end too: the page must notice
		// on its own.
		if !pc.injected.Load() && !pc.holed.Load() {
			_ = pc.client.Close()
		}
		_ = pc.server.Close()
	}()
	br := bufio.NewReader(pc.server)
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if err != nil {
			_, _ = pc.client.Write(head)
			return
		}
		if string(line) == "\r\n" {
			break
		}
	}
	pc.wmu.Lock()
	_, err := pc.client.Write(head)
	pc.wmu.Unlock()
	if err != nil {
		return
	}
	for {
		frame, err := readFrame(br)
		if err != nil {
			return
		}
		if pc.holed.Load() {
			continue
		}
		pc.wmu.Lock()
		if !pc.injected.Load() {
			_, err = pc.client.Write(frame)
		}
		pc.wmu.Unlock()
		if err != nil {
			return
		}
		if pc.hole {
			pc.holed.Store(true)
		}
	}
}

// readFrame reads one whole (unmasked, server) WebSocket frame.
func readFrame(br *bufio.Reader) ([]byte, error) {
	h := make([]byte, 2, 14)
	if _, err := io.ReadFull(br, h); err != nil {
		return nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		ext := make([]byte, 2)
		if _, err := io.ReadFull(br, ext); err != nil {
			return nil, err
		}
		h = append(h, ext...)
		n = uint64(binary.BigEndian.Uint16(ext))
	case 127:
		ext := make([]byte, 8)
		if _, err := io.ReadFull(br, ext); err != nil {
			return nil, err
		}
		h = append(h, ext...)
		n = binary.BigEndian.Uint64(ext)
	}
	if h[1]&0x80 != 0 {
		return nil, errors.New("masked server frame")
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return nil, err
	}
	return append(h, payload...), nil
}

func (p *proxy) forget(pc *pconn) {
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

func (p *proxy) each(f func(*pconn)) {
	p.mu.Lock()
	conns := make([]*pconn, 0, len(p.conns))
	for pc := range p.conns {
		conns = append(conns, pc)
	}
	p.mu.Unlock()
	for _, pc := range conns {
		f(pc)
	}
}

// setRefuse makes the proxy close new connections at once (or not).
func (p *proxy) setRefuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// holeNextConn black-holes the next connection after its first frame.
func (p *proxy) holeNextConn() {
	p.mu.Lock()
	p.holeNext = true
	p.mu.Unlock()
}

// cut drops every connection without a close frame (the page sees 1006).
func (p *proxy) cut() {
	p.each(func(pc *pconn) {
		_ = pc.client.Close()
		_ = pc.server.Close()
	})
}

// closeWith sends the page a server close frame with code and reason on
// every connection, between two frames, and drops the server side, as a
// broker closing the session would.
func (p *proxy) closeWith(code int, reason string) {
	payload := binary.BigEndian.AppendUint16(nil, uint16(code))
	payload = append(payload, reason...)
	frame := append([]byte{0x88, byte(len(payload))}, payload...)
	p.each(func(pc *pconn) {
		pc.wmu.Lock()
		pc.injected.Store(true)
		_, _ = pc.client.Write(frame)
		pc.wmu.Unlock()
		_ = pc.server.Close()
		// The page answers the close; up() then closes the client side.
		// Should it not, the deadline ends the read.
		_ = pc.client.SetReadDeadline(time.Now().Add(3 * time.Second))
	})
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}
