package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// guarded is a connGuard on a loopback listener whose accept loop says
// "k" on every connection it admits and hands it to the test.
type guarded struct {
	g        *connGuard
	addr     string
	accepted chan net.Conn
}

func newGuarded(t *testing.T, capacity, perAddr int, exempt ...netip.Prefix) *guarded {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &guarded{
		g:        newConnGuard(ln, capacity, perAddr, exempt, slog.New(slog.DiscardHandler)),
		addr:     ln.Addr().String(),
		accepted: make(chan net.Conn, 64),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := g.g.Accept()
			if err != nil {
				return
			}
			_, _ = nc.Write([]byte("k"))
			g.accepted <- nc
		}
	}()
	t.Cleanup(func() {
		_ = g.g.Close()
		<-done
		close(g.accepted)
		for nc := range g.accepted {
			_ = nc.Close()
		}
	})
	return g
}

// dial connects from src and returns the server's side of the
// connection, or nil when the guard refused it (closed it unanswered).
func (g *guarded) dial(t *testing.T, src string) net.Conn {
	t.Helper()
	nc, err := dialFrom(src, g.addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil // closed so soon that the connect saw it
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetReadDeadline(time.Now().Add(connTimeout))
	var b [1]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("a connection from %s was neither admitted nor closed", src)
		}
		return nil
	}
	server := <-g.accepted
	t.Cleanup(func() { _ = server.Close() })
	return server
}

// admits dials n connections from src and fails unless exactly the first
// want are admitted; it returns the server's sides of those.
func (g *guarded) admits(t *testing.T, src string, n, want int) []net.Conn {
	t.Helper()
	var in []net.Conn
	for i := range n {
		c := g.dial(t, src)
		if (c != nil) != (i < want) {
			t.Fatalf("connection %d from %s: admitted %v, want the first %d of %d admitted", i+1, src, c != nil, want, n)
		}
		if c != nil {
			in = append(in, c)
		}
	}
	return in
}

// TestConnGuard: the node's bound, its reserve for light addresses and
// trusted proxies, and a closed connection's release.
func TestConnGuard(t *testing.T) {
	t.Parallel()
	// Capacity 12: its last eighth (one) is for light addresses.
	g := newGuarded(t, 12, 0, netip.MustParsePrefix("127.0.0.5/32"))

	g.admits(t, "127.0.0.1", 4, 4)
	proxy := g.admits(t, "127.0.0.5", 7, 7) // 11 open
	g.admits(t, "127.0.0.2", 1, 1)          // a light address gets the reserve: 12 open
	g.admits(t, "127.0.0.3", 1, 0)          // the node is full
	g.admits(t, "127.0.0.5", 1, 0)          // for the proxy too
	_ = proxy[0].Close()
	g.admits(t, "127.0.0.3", 2, 1)

	if r, f := g.g.refusedReserve.Load(), g.g.refusedFull.Load(); r != 0 || f != 3 {
		t.Errorf("refused %d for the reserve and %d for the node's bound, want 0 and 3", r, f)
	}
}

// TestConnGuardIdlePerAddress: a connection that turns idle while its
// address holds the bound of idle ones is closed; one that becomes
// active again, or a WebSocket session, leaves the count.
func TestConnGuardIdlePerAddress(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 0, 2, netip.MustParsePrefix("127.0.0.5/32"))
	c := g.admits(t, "127.0.0.1", 4, 4)
	idle := func(nc net.Conn) bool {
		g.g.connState(nc, http.StateIdle)
		return !nc.(*guardedConn).closed.Load()
	}
	if !idle(c[0]) || !idle(c[1]) || idle(c[2]) {
		t.Fatal("want the first two connections to stay idle and the third closed")
	}
	g.g.connState(c[0], http.StateActive) // a request on it
	if !idle(c[3]) {
		t.Fatal("a connection was closed on turning idle, with one idle connection left")
	}
	g.g.connState(c[1], http.StateHijacked) // an upgrade, which it was not, but it counts out
	if !idle(c[0]) {
		t.Fatal("a connection was closed on turning idle after a hijack left one")
	}
	p := g.admits(t, "127.0.0.5", 3, 3)
	for _, nc := range p {
		if !idle(nc) {
			t.Fatal("a trusted proxy's idle connection was closed")
		}
	}
	if n := g.g.refusedIdle.Load(); n != 1 {
		t.Errorf("%d closed on turning idle, want 1", n)
	}
}

// TestConnGuardReserve: near the node's bound, an address that holds
// lightConns connections or more is refused, one that holds fewer is
// not.
func TestConnGuardReserve(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 16, 0) // the reserve from 14 open on
	g.admits(t, "127.0.0.1", 15, 14)
	g.admits(t, "127.0.0.2", 3, 2)
	if r := g.g.refusedReserve.Load(); r != 1 {
		t.Errorf("refused %d for the reserve, want 1", r)
	}
}

// TestGuardedConnKeepsTCPMethods: the WebSocket server polls a session's
// socket and writes to it with writev through SyscallConn, and
// half-closes it: the guard's connections must still offer both.
func TestGuardedConnKeepsTCPMethods(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 0, 0)
	c := g.dial(t, "127.0.0.1")
	if _, ok := c.(syscall.Conn); !ok {
		t.Errorf("%T does not implement syscall.Conn", c)
	}
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Errorf("%T has no CloseWrite", c)
	}
}
