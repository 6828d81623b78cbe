package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/client"
	"github.com/tidings-io/tidings/control"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	wstransport "github.com/tidings-io/tidings/transport/ws"
	"go.uber.org/goleak"
)

// brokerURL is the base URL of the broker TestMain starts for the
// examples: one node on the memory store, no API key (loopback clients
// may publish), no JWT (anonymous sessions).
var brokerURL string

// wait bounds the tests' waits for what should happen within a moment.
const wait = 15 * time.Second

// mainRun starts the examples' broker around the tests and stops it
// before goleak looks for leaked goroutines.
type mainRun struct{ m *testing.M }

func (r mainRun) Run() int {
	st := memory.New(memory.Config{})
	n := newNode(st, nodeConfig{})
	brokerURL = n.URL
	code := r.m.Run()
	n.shutdown()
	_ = st.Close()
	// The clients of the examples and tests use http.DefaultTransport.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	return code
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(mainRun{m})
}

// nodeStore is what a node runs on: the memory store or Redis.
type nodeStore interface {
	broker.Store
	control.Backend
}

// nodeConfig configures a node; zero values are the packages' defaults.
type nodeConfig struct {
	ID     string
	Broker broker.Config
	WS     wstransport.Config
	API    httpapi.Config
	// Control runs the node's control plane (the server API, presence).
	Control bool
	// JWTKey, when set, makes sessions need a token signed with it (HS256).
	JWTKey []byte
	// Wrap, when set, wraps the node's HTTP handler (a test middleware).
	Wrap func(http.Handler) http.Handler
	// Listener, when set, is the listener the node serves on.
	Listener net.Listener
}

// node is one broker node served by an httptest server on loopback.
type node struct {
	ID   string
	URL  string
	B    *broker.Broker
	WS   *wstransport.Server
	API  *httpapi.API
	Ctl  *ctlnode.Node
	srv  *httptest.Server
	once sync.Once
}

// newNode starts a node on st. Stop it with shutdown.
func newNode(st nodeStore, cfg nodeConfig) *node {
	if cfg.ID == "" {
		cfg.ID = "node-1"
	}
	b := broker.New(cfg.Broker, st, wstransport.Encoder{})
	n := &node{ID: cfg.ID, B: b}
	cfg.WS.NodeID = cfg.ID
	if cfg.WS.CloseTimeout == 0 {
		cfg.WS.CloseTimeout = 2 * time.Second
	}
	if cfg.Control {
		n.Ctl = ctlnode.New(ctlnode.Config{Broker: b, Backend: st, ID: cfg.ID, Presence: true,
			AnnounceInterval: 200 * time.Millisecond, Logger: discard})
		if err := n.Ctl.Start(context.Background()); err != nil {
			panic(err)
		}
		cfg.WS.Registry, cfg.WS.Presence = n.Ctl, n.Ctl
		cfg.API.Control = n.Ctl
	}
	if cfg.JWTKey != nil {
		v, err := auth.New(auth.Config{HMACKey: cfg.JWTKey})
		if err != nil {
			panic(err)
		}
		if n.Ctl != nil {
			v.CheckRevocation(n.Ctl.Check)
		}
		cfg.WS.Tokens = v
	}
	n.WS = wstransport.New(cfg.WS, b)
	n.API = httpapi.New(cfg.API, b, n.WS)
	var h http.Handler = n.API
	if cfg.Wrap != nil {
		h = cfg.Wrap(h)
	}
	n.srv = httptest.NewUnstartedServer(h)
	if cfg.Listener != nil {
		_ = n.srv.Listener.Close()
		n.srv.Listener = cfg.Listener
	}
	n.srv.Start()
	n.URL = n.srv.URL
	return n
}

// startNode starts a node on a memory store of its own; both stop when
// the test ends.
func startNode(t testing.TB, cfg nodeConfig) *node {
	t.Helper()
	st := memory.New(memory.Config{})
	n := newNode(st, cfg)
	t.Cleanup(func() {
		n.shutdown()
		_ = st.Close()
	})
	return n
}

// shutdown stops the node gracefully, as cmd/broker does: sessions get
// 1001. It may be called more than once.
func (n *node) shutdown() {
	n.once.Do(func() {
		n.API.BeginShutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.srv.Config.SetKeepAlivesEnabled(false)
		_ = n.WS.Shutdown(ctx)
		n.srv.Close()
		if n.Ctl != nil {
			n.Ctl.Close()
		}
	})
}

// sessions returns nil once the node holds n sessions: a condition for
// testkit.Eventually.
func (n *node) sessions(want int64) func() error {
	return func() error {
		if got := n.B.Stats().Sessions; got != want {
			return fmt.Errorf("%d sessions on %s, want %d", got, n.ID, want)
		}
		return nil
	}
}

var discard = slog.New(slog.DiscardHandler)

// newClient returns a client of url with cfg's other fields.
func newClient(t testing.TB, url string, cfg client.Config) *client.Client {
	t.Helper()
	cfg.URL = url
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fastBackoff reconnects quickly, for tests.
var fastBackoff = client.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, GoingAway: 20 * time.Millisecond}

// subscribe subscribes and closes the subscription when the test ends.
func subscribe(t testing.TB, c *client.Client, patterns []string, opts client.SubscribeOptions) *client.Subscription {
	t.Helper()
	if opts.Backoff == (client.Backoff{}) {
		opts.Backoff = fastBackoff
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// The subscription lives until the test ends, not ctx.
	sub, err := c.Subscribe(context.WithoutCancel(ctx), patterns, opts)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", patterns, err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// next returns the next delivery, failing the test after wait.
func next(t testing.TB, sub *client.Subscription) client.Delivery {
	t.Helper()
	select {
	case d, ok := <-sub.C():
		if !ok {
			t.Fatalf("the subscription ended: %v", sub.Err())
		}
		return d
	case <-time.After(wait):
		t.Fatalf("no delivery within %v", wait)
	}
	panic("unreachable")
}

// expectClosed waits until C is closed, failing the test after wait or
// on a delivery.
func expectClosed(t testing.TB, sub *client.Subscription) {
	t.Helper()
	select {
	case d, ok := <-sub.C():
		if ok {
			t.Fatalf("got a delivery %s %d, want C closed", d.Topic, d.Offset)
		}
	case <-time.After(wait):
		t.Fatalf("C not closed within %v", wait)
	}
}

// eventually is testkit.Eventually with the tests' bound.
func eventually(t testing.TB, cond func() error) {
	t.Helper()
	testkit.Eventually(t, wait, cond)
}

// ctxT returns a context for one call, bounded by wait.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// proxy is a TCP proxy that a test can cut, freeze and repoint: the path
// between a client and a node.
type proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	target string
	cut    bool
	conns  map[*pipe]struct{}
}

// pipe is one proxied connection.
type pipe struct {
	in, out net.Conn
	frozen  bool // guarded by proxy.mu: bytes are dropped, not forwarded
}

// startProxy proxies a loopback port to target; it stops when the test
// ends.
func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[*pipe]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// URL is the proxy's http:// URL.
func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut, target := p.cut, p.target
		p.mu.Unlock()
		if cut {
			_ = in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		pp := &pipe{in: in, out: out}
		p.mu.Lock()
		p.conns[pp] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.copy(pp, out, in)
		go p.copy(pp, in, out)
	}
}

// copy forwards src to dst, or drops what it reads while pp is frozen.
func (p *proxy) copy(pp *pipe, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen := pp.frozen
			p.mu.Unlock()
			if !frozen {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
		}
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	frozen := pp.frozen
	p.mu.Unlock()
	if frozen && src == pp.out {
		// The node ended it: a black hole does not tell the client.
		return
	}
	_ = pp.in.Close()
	_ = pp.out.Close()
	p.mu.Lock()
	delete(p.conns, pp)
	p.mu.Unlock()
}

// Cut drops every connection (without a close frame) and refuses new ones
// until Restore.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for pp := range p.conns {
		_ = pp.in.Close()
		_ = pp.out.Close()
	}
}

// Restore accepts connections again.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Freeze makes the current connections black holes, as behind a NAT
// that forgot them: they forward nothing, and the client's side stays
// open even when the node ends its side. New connections are forwarded.
func (p *proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pp := range p.conns {
		pp.frozen = true
	}
}

// Point makes new connections go to target.
func (p *proxy) Point(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// hostOf returns the host:port of an http:// URL.
func hostOf(url string) string { return url[len("http://"):] }

// logRecorder is a slog handler that keeps each record as a line of its
// message and attributes, for tests that check what the client did.
type logRecorder struct {
	mu    *sync.Mutex
	lines *[]string
}

func newLogRecorder() (*slog.Logger, *logRecorder) {
	r := &logRecorder{mu: new(sync.Mutex), lines: new([]string)}
	return slog.New(r), r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	r.mu.Lock()
	*r.lines = append(*r.lines, line)
	r.mu.Unlock()
	return nil
}

// count returns how many lines contain s.
func (r *logRecorder) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range *r.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
