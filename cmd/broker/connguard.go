package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidings-io/tidings/internal/telemetry"
	"github.com/tidings-io/tidings/limit"
	"go.opentelemetry.io/otel/metric"
)

// lightConns is how many connections an address may hold and still get
// one of the connections connGuard keeps in reserve.
const lightConns = 8

// connGuard is the node's listener and the HTTP server's connection
// hooks. It bounds the client connections the node holds, each a file
// descriptor, so that no client can use up the descriptors: accept would
// then fail for every client, health checks included. The bounds:
//
//   - capacity, at accept: every connection of the node, WebSocket
//     sessions included. Its last eighth is kept for addresses that hold
//     fewer than lightConns (and for trusted proxies): when one client
//     hoards connections, health checks and new clients still get in,
//     and the hoarder is the one refused. A refused connection is
//     accepted and closed at once with a reset, so that it waits neither
//     in the kernel's backlog nor at the client.
//   - idlePerAddr, when a connection turns idle between requests: the
//     idle keep-alive connections of one peer address (IPv6: a /64).
//     Connections arrive before any X-Forwarded-For is known, so this is
//     the TCP peer; trusted proxies are exempt. A response that would
//     leave one idle connection too many says Connection: close, and a
//     connection that turns idle over the bound all the same (requests
//     that ended together) is closed. Connections that have sent no
//     request yet are bounded by the handshake timeout, WebSocket
//     sessions by the WebSocket server's own limits (-ip-max-conns).
type connGuard struct {
	net.Listener
	capacity    int // 0: no bound
	reserve     int // open connections beyond which only light addresses get in
	idlePerAddr int // 0: no bound
	exempt      []netip.Prefix
	log         *slog.Logger

	// mu guards open, addrs and warned.
	mu     sync.Mutex
	open   int
	addrs  map[netip.Prefix]*addrConns
	warned time.Time // when a refusal for capacity was last logged as a warning

	// Refusals by reason: idle, reserve, capacity.
	refusedIdle, refusedReserve, refusedFull atomic.Uint64
}

// addrConns counts the connections of one address group.
type addrConns struct {
	all  int // every connection, WebSocket sessions included
	idle int // idle HTTP keep-alive connections
}

// newConnGuard wraps ln with the bounds (0: none) and the trusted
// proxies, which are exempt from the bound per address and from the
// reserve.
func newConnGuard(ln net.Listener, capacity, idlePerAddr int, exempt []netip.Prefix, log *slog.Logger) *connGuard {
	g := &connGuard{Listener: ln, capacity: capacity, idlePerAddr: idlePerAddr, exempt: exempt, log: log,
		addrs: make(map[netip.Prefix]*addrConns)}
	if capacity > 0 {
		g.reserve = capacity - max(capacity/8, 1)
	}
	return g
}

// connCapacity is -max-conns, or when it is 0 the open-file limit less a
// reserve for the node's other descriptors (the store's connections,
// the poller, files): an eighth of the limit, at least 32, at most 1024.
// It is 0 (no bound) when the limit cannot be read.
func connCapacity(set int) int {
	if set > 0 {
		return set
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 0
	}
	n := int(min(lim.Cur, 1<<30))
	return max(n-min(max(n/8, 32), 1024), 1)
}

// Accept returns the next connection within the node's bound, closing
// those beyond it.
func (g *connGuard) Accept() (net.Conn, error) {
	for {
		nc, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := nc.(*net.TCPConn)
		if !ok {
			return nc, nil
		}
		if gc := g.admit(tc); gc != nil {
			return gc, nil
		}
		_ = tc.SetLinger(0)
		_ = tc.Close()
	}
}

// admit counts tc in, or returns nil when the node's bound refuses it.
func (g *connGuard) admit(tc *net.TCPConn) *guardedConn {
	var addr netip.Addr
	if ta, ok := tc.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr().Unmap()
	}
	gc := &guardedConn{TCPConn: tc, g: g, key: limit.Group(addr)}
	for _, p := range g.exempt {
		if p.Contains(addr) {
			gc.exempt = true
			break
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.addrs[gc.key]
	if a == nil {
		a = &addrConns{}
	}
	var refused *atomic.Uint64
	switch {
	case g.capacity > 0 && g.open >= g.capacity:
		refused = &g.refusedFull
	case g.capacity > 0 && g.open >= g.reserve && !gc.exempt && a.all >= lightConns:
		refused = &g.refusedReserve
	}
	if refused != nil {
		refused.Add(1)
		reason := "capacity"
		if refused == &g.refusedReserve {
			reason = "reserve"
		}
		if now := time.Now(); now.Sub(g.warned) >= 10*time.Second {
			g.warned = now
			g.log.Warn("connections near the node's bound: refusing new ones", "reason", reason,
				"open", g.open, "max_conns", g.capacity, "remote", addr.String(), "remote_conns", a.all)
		} else {
			g.log.Debug("connection refused", "reason", reason, "remote", addr.String(), "remote_conns", a.all)
		}
		return nil
	}
	g.addrs[gc.key] = a
	a.all++
	g.open++
	return gc
}

// release counts out a closed connection.
func (g *connGuard) release(gc *guardedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	a := g.addrs[gc.key]
	if a == nil {
		return
	}
	a.all--
	if gc.idle.Swap(false) {
		a.idle--
	}
	if a.all <= 0 {
		delete(g.addrs, gc.key)
	}
}

// guardedOf returns the guard's connection under nc (a TLS connection's
// too), or nil.
func guardedOf(nc net.Conn) *guardedConn {
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok { // TLS
		nc = tc.NetConn()
	}
	gc, _ := nc.(*guardedConn)
	return gc
}

// connState is the HTTP server's ConnState hook: it counts the idle
// keep-alive connections of each address, and closes one that turns idle
// over the bound.
func (g *connGuard) connState(nc net.Conn, state http.ConnState) {
	gc := guardedOf(nc)
	if gc == nil {
		return
	}
	if state != http.StateIdle {
		if gc.idle.Swap(false) {
			g.mu.Lock()
			if a := g.addrs[gc.key]; a != nil {
				a.idle--
			}
			g.mu.Unlock()
		}
		return
	}
	g.mu.Lock()
	a := g.addrs[gc.key]
	if a == nil || gc.closed.Load() {
		g.mu.Unlock()
		return
	}
	over := g.idlePerAddr > 0 && !gc.exempt && a.idle >= g.idlePerAddr
	if !over {
		a.idle++
		gc.idle.Store(true)
	}
	g.mu.Unlock()
	if over {
		g.refusedIdle.Add(1)
		g.log.Debug("idle connection closed", "reason", "idle", "remote", gc.RemoteAddr().String())
		_ = gc.Close()
	}
}

// guardedConnKey is the context key of a request's connection.
type guardedConnKey struct{}

// connContext is the HTTP server's ConnContext hook: it puts the
// connection in its requests' context, for closeOverIdle.
func (g *connGuard) connContext(ctx context.Context, nc net.Conn) context.Context {
	if gc := guardedOf(nc); gc != nil {
		return context.WithValue(ctx, guardedConnKey{}, gc)
	}
	return ctx
}

// closeOverIdle answers with Connection: close when the request's address
// holds the bound of idle connections already, so that its client does
// not keep this one for another request (which it could lose to the
// close at the idle bound).
func (g *connGuard) closeOverIdle(next http.Handler) http.Handler {
	if g.idlePerAddr <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gc, _ := r.Context().Value(guardedConnKey{}).(*guardedConn); gc != nil && !gc.exempt && r.Header.Get("Upgrade") == "" {
			g.mu.Lock()
			a := g.addrs[gc.key]
			full := a != nil && a.idle >= g.idlePerAddr
			g.mu.Unlock()
			if full {
				w.Header().Set("Connection", "close")
			}
		}
		next.ServeHTTP(w, r)
	})
}

// instrument reports the open connections and the refusals to mp (nil:
// metrics off).
func (g *connGuard) instrument(mp metric.MeterProvider) {
	if mp == nil {
		return
	}
	scope := telemetry.Scope("cmd/broker")
	in := telemetry.NewInstruments(telemetry.Meter(mp, scope))
	reasons := []string{"idle", "reserve", "capacity"}
	counts := []*atomic.Uint64{&g.refusedIdle, &g.refusedReserve, &g.refusedFull}
	byReason := telemetry.AttrsEach("reason", reasons...)
	in.Observe(
		telemetry.Gauge("tidings.connections", "{connection}", "Client connections the node holds, HTTP and WebSocket (bound: -max-conns).",
			func(o telemetry.Observation) {
				g.mu.Lock()
				n := g.open
				g.mu.Unlock()
				o(int64(n))
			}),
		telemetry.Counter("tidings.connections.refused", "{connection}", "Client connections closed by the node's bounds, by reason: idle (turned idle over -http-ip-max-idle), reserve (a hoarding address near -max-conns), capacity (-max-conns).",
			func(o telemetry.Observation) {
				for i, c := range counts {
					o(int64(c.Load()), byReason[i])
				}
			}),
	)
	in.LogErr(g.log, scope)
}

// guardedConn is an accepted connection that connGuard counts until it
// is closed. It embeds the *net.TCPConn so that its other methods stay
// visible: the WebSocket server needs SyscallConn (epoll, writev) and
// CloseWrite.
type guardedConn struct {
	*net.TCPConn
	g      *connGuard
	key    netip.Prefix
	exempt bool        // a trusted proxy's
	idle   atomic.Bool // counted as an idle connection of its address
	closed atomic.Bool
}

// Close counts the connection out (before it closes, so that a peer that
// sees the end may connect again at once) and closes it.
func (c *guardedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.g.release(c)
	}
	return c.TCPConn.Close()
}
