package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// connTimeout bounds every read and write of these tests' clients.
const connTimeout = 10 * time.Second

// dialFrom opens a TCP connection to addr from the loopback address src
// (127.0.0.1, 127.0.0.2, …), so that a test can play several clients.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: connTimeout}
	return d.Dial("tcp", addr)
}

// keptConn is an HTTP/1.1 connection left open after its request.
type keptConn struct {
	nc       net.Conn
	br       *bufio.Reader
	answered time.Time // when its response was read
}

// errRefused is a connection the broker closed before answering.
var errRefused = errors.New("closed without an answer")

// keepAlive opens a connection from src, sends GET path with keep-alive
// and reads the answer, which must be 200; the connection is left open
// and idle. A connection the broker closes without answering is
// errRefused.
func keepAlive(t *testing.T, src, addr, path string) (*keptConn, error) {
	t.Helper()
	nc, err := dialFrom(src, addr)
	if errors.Is(err, syscall.ECONNRESET) {
		// Closed so soon that the connect saw it.
		return nil, fmt.Errorf("%w: %v", errRefused, err)
	}
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(connTimeout))
	if _, err := io.WriteString(nc, "GET "+path+" HTTP/1.1\r\nHost: broker\r\n\r\n"); err != nil {
		return nil, fmt.Errorf("%w: %v", errRefused, err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("neither answered nor closed within %v", connTimeout)
		}
		return nil, fmt.Errorf("%w: %v", errRefused, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return &keptConn{nc: nc, br: br, answered: time.Now()}, nil
}

// hoard opens up to n keep-alive connections from src one after the
// other and returns those answered and how many were refused.
func hoard(t *testing.T, src, addr string, n int) (kept []*keptConn, refused int) {
	t.Helper()
	for range n {
		c, err := keepAlive(t, src, addr, "/healthz")
		switch {
		case errors.Is(err, errRefused):
			refused++
		case err != nil:
			t.Fatal(err)
		default:
			kept = append(kept, c)
		}
	}
	return kept, refused
}

// getFrom sends GET path from src on a connection of its own, which the
// client closes once it has the answer, 200.
func getFrom(t *testing.T, src, addr, path string) {
	t.Helper()
	c, err := keepAlive(t, src, addr, path)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, src, err)
	}
	_ = c.nc.Close()
}

// wsSessionFrom opens a WebSocket session from src and checks that it
// answers a ping command.
func wsSessionFrom(t *testing.T, src, addr string) {
	t.Helper()
	d := ws.Dialer{
		Protocols: []string{"pubsub.v1"},
		Timeout:   connTimeout,
		NetDial:   func(context.Context, string, string) (net.Conn, error) { return dialFrom(src, addr) },
	}
	nc, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/v1/ws")
	if err != nil {
		t.Fatalf("WebSocket session from %s: %v", src, err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(connTimeout))
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, nc}
	if p, err := wsutil.ReadServerText(rw); err != nil || !strings.Contains(string(p), `"welcome"`) {
		t.Fatalf("session from %s: first frame %q, %v; want the welcome", src, p, err)
	}
	if err := wsutil.WriteClientText(nc, []byte(`{"op":"ping","ref":"r"}`)); err != nil {
		t.Fatal(err)
	}
	if p, err := wsutil.ReadServerText(rw); err != nil || !strings.Contains(string(p), `"pong"`) {
		t.Fatalf("session from %s: answer %q, %v; want the pong", src, p, err)
	}
}

// awaitClosed waits for the broker to close each of conns, all at once,
// and returns how long after its answer each was closed. It fails when
// one is still open within of its answer, or gets bytes.
func awaitClosed(t *testing.T, conns []*keptConn, within time.Duration) []time.Duration {
	t.Helper()
	took := make([]time.Duration, len(conns))
	errs := make(chan error, len(conns))
	for i, c := range conns {
		go func() {
			_ = c.nc.SetReadDeadline(c.answered.Add(within))
			_, err := c.br.ReadByte()
			took[i] = time.Since(c.answered)
			switch {
			case err == nil:
				errs <- fmt.Errorf("connection %d: the broker sent bytes on an idle connection", i)
			case errors.Is(err, os.ErrDeadlineExceeded):
				errs <- fmt.Errorf("connection %d was still open %v after its answer", i, within)
			default:
				errs <- nil
			}
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return took
}

// TestHTTPConnectionsPerAddress: one address that opens many keep-alive
// connections keeps -http-ip-max-idle of them idle, and the rest are
// closed once answered; other addresses are served meanwhile, over HTTP
// and WebSocket; idle connections are closed after -http-idle-timeout,
// which gives the address its allowance back.
func TestHTTPConnectionsPerAddress(t *testing.T) {
	t.Parallel()
	const perAddr, extra, idle = 8, 6, 2 * time.Second
	n := startNode(t, map[string]string{
		"TIDINGS_HTTP_IP_MAX_IDLE":  fmt.Sprint(perAddr),
		"TIDINGS_HTTP_IDLE_TIMEOUT": idle.String(),
	}, "-demo=false")

	kept, refused := hoard(t, "127.0.0.1", n.addr, perAddr+extra)
	if refused != 0 {
		t.Fatalf("%d of %d connections were closed unanswered", refused, perAddr+extra)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		getFrom(t, "127.0.0.2", n.addr, path)
	}
	wsSessionFrom(t, "127.0.0.3", n.addr)

	// Each connection is closed: at once, or at the idle timeout.
	atOnce, atTimeout := 0, 0
	for i, took := range awaitClosed(t, kept, idle+5*time.Second) {
		switch {
		case took < idle/2:
			atOnce++
		case took < idle-100*time.Millisecond:
			t.Errorf("idle connection %d closed %v after its answer, before the idle timeout %v", i, took, idle)
		default:
			atTimeout++
		}
	}
	if atOnce != extra || atTimeout != perAddr {
		t.Errorf("of %d keep-alive connections from one address, %d were closed once answered and %d at the idle timeout; want %d and %d",
			len(kept), atOnce, atTimeout, extra, perAddr)
	}
	// Closed, they count no more.
	getFrom(t, "127.0.0.1", n.addr, "/healthz")
}

// TestDescriptorReserve: when the node's connections near -max-conns,
// the last eighth are kept for addresses that hold few connections: a
// client that hoards connections is refused there, while /healthz,
// /readyz and new WebSocket sessions from other addresses still work.
func TestDescriptorReserve(t *testing.T) {
	t.Parallel()
	const capacity = 48
	n := startNode(t, map[string]string{
		"TIDINGS_MAX_CONNS":        fmt.Sprint(capacity),
		"TIDINGS_HTTP_IP_MAX_IDLE": "0", // no bound per address: the reserve alone
	}, "-demo=false")

	const hoarder = capacity - capacity/8
	kept, refused := hoard(t, "127.0.0.1", n.addr, capacity+4)
	if len(kept) != hoarder || refused != capacity+4-hoarder {
		t.Fatalf("one address opened %d idle connections: %d answered and %d closed, want %d and %d",
			capacity+4, len(kept), refused, hoarder, capacity+4-hoarder)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		getFrom(t, "127.0.0.2", n.addr, path)
	}
	wsSessionFrom(t, "127.0.0.3", n.addr)

	// The refusals are counted.
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return dialFrom("127.0.0.2", n.addr) },
	}}
	resp, err := client.Get("http://" + n.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^tidings_connections_refused_total\{[^}]*reason="reserve"[^}]*\} %d$`, capacity+4-hoarder))
	if !want.Match(body) {
		t.Errorf("/metrics lacks %s; its tidings_connections lines:\n%s", want, grepLines(body, "tidings_connections"))
	}
}

// grepLines returns the lines of p that contain s.
func grepLines(p []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(p), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
