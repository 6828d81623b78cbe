package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/transport/clientip"
)

// testClientHeader carries, in a request to a testProxy, the address the
// proxy takes for its client's, as if the request had come from there:
// the test's one TCP peer plays many clients. The proxy drops it.
const testClientHeader = "X-Test-Client"

// testProxy is a reverse proxy (net/http/httputil) in front of a broker,
// as an ingress controller is: it names its client in X-Forwarded-For or,
// when forwarded is set, in Forwarded (RFC 7239), adding it after what
// the request says already, as nginx's $proxy_add_x_forwarded_for does,
// and passing the other header through as it came.
type testProxy struct {
	url  string // http://host:port
	host string // host:port
}

// startProxy serves a testProxy of backend (host:port) until the test
// ends.
func startProxy(t *testing.T, backend string, forwarded bool) testProxy {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: backend}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			client := r.In.Header.Get(testClientHeader)
			r.Out.Header.Del(testClientHeader)
			if client == "" {
				client, _, _ = net.SplitHostPort(r.In.RemoteAddr)
			}
			if forwarded {
				r.Out.Header.Set("Forwarded", strings.Join(append(r.In.Header.Values("Forwarded"), "for="+forwardedNode(client)), ", "))
			} else {
				// Rewrite has dropped the X-Forwarded-For that came in.
				r.Out.Header.Set("X-Forwarded-For", strings.Join(append(r.In.Header.Values("X-Forwarded-For"), client), ", "))
			}
		},
	}
	ts := httptest.NewServer(rp)
	t.Cleanup(func() {
		ts.Close()
		tr.CloseIdleConnections()
	})
	return testProxy{url: ts.URL, host: ts.Listener.Addr().String()}
}

// forwardedNode writes addr (an address, with or without port) as the
// node of a Forwarded for= parameter: IPv6 in brackets, quoted when it
// needs to be.
func forwardedNode(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return fmt.Sprintf("%q", ap.String()) // "198.51.100.7:4711", "[2001:db8::1]:4711"
	}
	if a := netip.MustParseAddr(addr); a.Is6() {
		return `"[` + a.String() + `]"`
	}
	return addr
}

// openVia opens a session at the broker behind p as the client at addr,
// with extra headers, and reads its welcome.
func (p testProxy) openVia(ctx context.Context, addr string, extra http.Header) (*wstest.Conn, error) {
	h := http.Header{testClientHeader: {addr}}
	for k, v := range extra {
		h[k] = v
	}
	return welcomed(wstest.Dialer{Header: h}.Open(ctx, "ws://"+p.host+"/v1/ws"))
}

// proxiedClient is the address of the i-th of many clients: IPv4 from
// 198.18.0.0/15, or an IPv6 address with a port in a /64 of its own.
func proxiedClient(i int, v6 bool) string {
	if v6 {
		return fmt.Sprintf("[2001:db8:%x:%x::1]:%d", i>>16, i&0xffff, 1024+i)
	}
	return fmt.Sprintf("198.18.%d.%d", i>>8, i&0xff)
}

// openMany opens n sessions with open, 32 at a time, and returns them
// all open; it fails the test with the first errors.
func openMany(t *testing.T, n int, open func(ctx context.Context, i int) (*wstest.Conn, error)) []*wstest.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conns := make([]*wstest.Conn, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range next {
				conns[i], errs[i] = open(ctx, i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("session %d: %v", i, err))
		}
	}
	if len(failed) > 0 {
		closeAll(conns)
		t.Fatalf("%d of %d sessions not opened; the first: %s", len(failed), n, strings.Join(failed[:min(5, len(failed))], "; "))
	}
	return conns
}

// closeAll closes the sessions.
func closeAll(conns []*wstest.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// wantRateLimited checks that err is the broker's 429 rate_limited
// refusal of a handshake (c, when the handshake succeeded, is closed).
func wantRateLimited(t *testing.T, what string, c *wstest.Conn, err error) {
	t.Helper()
	if err == nil {
		_ = c.Close()
		t.Fatalf("%s: opened, want 429", what)
	}
	var ref *wstest.RefusedError
	if !errors.As(err, &ref) || ref.Status != http.StatusTooManyRequests || !bytes.Contains(ref.Body, []byte(`"rate_limited"`)) {
		t.Fatalf("%s: %v, want 429 rate_limited", what, err)
	}
}

// TestProxiedClientsHaveLimitsOfTheirOwn: behind a reverse proxy that
// names its clients in X-Forwarded-For, or in Forwarded, 2 000 sessions
// from 2 000 clients are all accepted with the default limits (1 000
// sessions and a burst of 1 000 per address: as one address they would
// not be), though a client sends its own header in front of the proxy's;
// and one client over -ip-max-conns is refused with 429 while the others
// are not. The proxy is on loopback, hence -trusted-proxies loopback.
func TestProxiedClientsHaveLimitsOfTheirOwn(t *testing.T) {
	t.Parallel()
	const sessions = 2000
	n := startNode(t, nil, "-trusted-proxies", "loopback", "-demo=false")
	strict := startNode(t, nil, "-trusted-proxies", "loopback", "-ip-max-conns", "3", "-demo=false")
	for _, tc := range []struct {
		name      string
		forwarded bool
		spoof     http.Header // what every client says of itself
	}{
		{"X-Forwarded-For", false, http.Header{"X-Forwarded-For": {"203.0.113.250"}}},
		{"Forwarded", true, http.Header{"Forwarded": {`for="[2001:db8::250]:1";proto=http`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, n.addr, tc.forwarded)
			start := time.Now()
			conns := openMany(t, sessions, func(ctx context.Context, i int) (*wstest.Conn, error) {
				return p.openVia(ctx, proxiedClient(i, tc.forwarded && i%2 == 1), tc.spoof)
			})
			t.Logf("%d sessions through the proxy from %d clients, open at once, in %v", len(conns), sessions, time.Since(start).Round(time.Millisecond))
			closeAll(conns)

			// -ip-max-conns 3: the fourth session of one client is refused.
			sp := startProxy(t, strict.addr, tc.forwarded)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			one, sameGroup, other := "198.51.100.1", "198.51.100.1:4000", "198.51.100.2"
			if tc.forwarded {
				one, sameGroup, other = "2001:db8:1:1::1", "[2001:db8:1:1::2]:4711", "2001:db8:1:2::1"
			}
			var held []*wstest.Conn
			defer func() { closeAll(held) }()
			for i := range 3 {
				c, err := sp.openVia(ctx, one, nil)
				if err != nil {
					t.Fatalf("session %d of %s: %v", i, one, err)
				}
				held = append(held, c)
			}
			c, err := sp.openVia(ctx, sameGroup, nil)
			wantRateLimited(t, "a fourth session of "+one, c, err)
			c, err = sp.openVia(ctx, one, tc.spoof)
			wantRateLimited(t, "a fourth session of "+one+" naming another address itself", c, err)
			c, err = sp.openVia(ctx, other, nil)
			if err != nil {
				t.Fatalf("another client, %s: %v", other, err)
			}
			held = append(held, c)
		})
	}
}

// TestSpoofedForwardingHeadersFromADirectPeerAreIgnored: with no proxy
// trusted (-trusted-proxies none), and with the default (private ranges,
// and the test's peer is loopback), the X-Forwarded-For or Forwarded a
// directly connected client sends is not believed: its sessions count
// against its own address, whatever each says.
func TestSpoofedForwardingHeadersFromADirectPeerAreIgnored(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-trusted-proxies", "none"}, nil} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			t.Parallel()
			n := startNode(t, nil, append([]string{"-ip-max-conns", "3", "-demo=false"}, args...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var held []*wstest.Conn
			defer func() { closeAll(held) }()
			open := func(h http.Header) (*wstest.Conn, error) {
				return wstest.Dialer{Header: h}.Open(ctx, "ws://"+n.addr+"/v1/ws")
			}
			for i, h := range []http.Header{
				{"X-Forwarded-For": {"198.51.100.1"}},
				{"Forwarded": {"for=198.51.100.2"}},
				{"X-Forwarded-For": {"198.51.100.3"}, "Forwarded": {"for=198.51.100.3"}},
			} {
				c, err := open(h)
				if err != nil {
					t.Fatalf("session %d: %v", i, err)
				}
				held = append(held, c)
			}
			for _, h := range []http.Header{
				{"X-Forwarded-For": {"198.51.100.4"}},
				{"Forwarded": {`for="[2001:db8::4]:1"`}},
				nil,
			} {
				c, err := open(h)
				wantRateLimited(t, fmt.Sprintf("a fourth session from the peer claiming %v", h), c, err)
			}
		})
	}
}

// TestForwardedLoopbackHasNoLoopbackRight: with no API key and no token,
// publishing is for the node's own host. A client a trusted proxy names
// 127.0.0.1 or ::1 does not get that right, over HTTP or WebSocket, nor
// does any client of a proxy on the host that is not trusted (the
// default); a client on the host that connects directly does.
func TestForwardedLoopbackHasNoLoopbackRight(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-trusted-proxies", "loopback"}, nil} {
		n := startNode(t, nil, append([]string{"-demo=false"}, args...)...)
		hc := newHTTPClient(t)
		if status, _, err := publish(hc, n.addr, "lo.direct", "1"); err != nil || status != http.StatusOK {
			t.Fatalf("%v: direct publish from loopback: %d %v, want 200", args, status, err)
		}
		for _, forwarded := range []bool{false, true} {
			p := startProxy(t, n.addr, forwarded)
			for _, client := range []string{"127.0.0.1", "::1"} {
				what := fmt.Sprintf("%v, forwarded %v, client %s", args, forwarded, client)
				req, err := http.NewRequest(http.MethodPost, p.url+"/v1/publish", strings.NewReader(`{"topic":"lo.t","data":1}`))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(testClientHeader, client)
				resp, err := newHTTPClient(t).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body struct {
					Error struct{ Code string } `json:"error"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden || body.Error.Code != "forbidden" {
					t.Errorf("%s: HTTP publish %d %q, want 403 forbidden", what, resp.StatusCode, body.Error.Code)
				}

				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				c, err := p.openVia(ctx, client, nil)
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				deadline := time.Now().Add(20 * time.Second)
				if err := c.Send(map[string]any{"op": "publish", "topic": "lo.t", "data": 1, "ref": "p"}); err != nil {
					t.Fatal(err)
				}
				f, err := c.Next(deadline)
				_ = c.Close()
				if err != nil || f.Type != "error" || f.Code != "forbidden" || f.Ref != "p" {
					t.Errorf("%s: WebSocket publish answered %s %v, want error forbidden", what, f.Raw, err)
				}
			}
		}
	}
}

// TestCrowdWarningIsLoggedOnce: with -trusted-proxies none, 150 sessions
// from one address (more than 100) log once that a proxy may stand in
// front unnamed.
func TestCrowdWarningIsLoggedOnce(t *testing.T) {
	t.Parallel()
	const warning = "many sessions from one address; is a proxy in front without -trusted-proxies?"
	n := startNode(t, nil, "-trusted-proxies", "none", "-demo=false")
	conns := openMany(t, 150, func(ctx context.Context, _ int) (*wstest.Conn, error) {
		return welcomed(dialWS(ctx, n.addr))
	})
	defer closeAll(conns)
	// The warning is logged before the upgrade is answered: every
	// session is open, so it is out, and no other will come.
	var found []map[string]any
	for _, l := range n.log.Lines() {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == warning {
			found = append(found, rec)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the warning was logged %d times, want once: %v", len(found), found)
	}
	if rec := found[0]; rec["level"] != "WARN" || rec["addr"] != "127.0.0.1" || rec["sessions"] != float64(101) || rec["node"] == nil {
		t.Errorf("warning %v, want level WARN, addr 127.0.0.1, sessions 101 and the node", rec)
	}
}

// TestTrustedProxiesValues: -trusted-proxies (and TIDINGS_TRUSTED_PROXIES)
// take CIDRs, addresses and the keywords private, loopback and none;
// empty is private, which trusts the private ranges and neither loopback
// nor a public address.
func TestTrustedProxiesValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		trusted []string
		not     []string
	}{
		{nil, nil, []string{"10.0.0.1", "172.16.5.5", "192.168.1.1", "100.64.0.1", "fd00::1"}, []string{"127.0.0.1", "::1", "203.0.113.1", "2001:db8::1"}},
		{[]string{"-trusted-proxies="}, nil, []string{"10.0.0.1"}, []string{"127.0.0.1"}},
		{nil, map[string]string{"TIDINGS_TRUSTED_PROXIES": ""}, []string{"10.0.0.1"}, []string{"127.0.0.1"}},
		{[]string{"-trusted-proxies", "none"}, nil, nil, []string{"10.0.0.1", "127.0.0.1", "203.0.113.1"}},
		{nil, map[string]string{"TIDINGS_TRUSTED_PROXIES": "none"}, nil, []string{"10.0.0.1", "127.0.0.1"}},
		{[]string{"-trusted-proxies", "private,loopback"}, nil, []string{"10.0.0.1", "127.0.0.1", "::1"}, []string{"203.0.113.1"}},
		{[]string{"-trusted-proxies", "loopback"}, nil, []string{"127.0.0.1", "::1"}, []string{"10.0.0.1"}},
		{nil, map[string]string{"TIDINGS_TRUSTED_PROXIES": "203.0.113.0/24, 198.51.100.7"}, []string{"203.0.113.9", "198.51.100.7"}, []string{"10.0.0.1", "198.51.100.8"}},
	} {
		c, err := parseConfig(tc.args, envOf(tc.env), &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%q %v: %v", tc.args, tc.env, err)
		}
		prefixes, err := trustedProxies(c.trustedProxies)
		if err != nil {
			t.Fatal(err)
		}
		r := clientip.New(prefixes)
		for _, a := range tc.trusted {
			if !r.Trusted(netip.MustParseAddr(a)) {
				t.Errorf("%q %v: %s is not trusted", tc.args, tc.env, a)
			}
		}
		for _, a := range tc.not {
			if r.Trusted(netip.MustParseAddr(a)) {
				t.Errorf("%q %v: %s is trusted", tc.args, tc.env, a)
			}
		}
	}
	for _, args := range [][]string{
		{"-trusted-proxies", "none,private"},
		{"-trusted-proxies", "10.0.0.0/8,none"},
		{"-trusted-proxies", "privat"},
	} {
		_, err := parseConfig(args, noEnv, &bytes.Buffer{})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "-trusted-proxies") {
			t.Errorf("%q: %v, want a usage error naming -trusted-proxies", args, err)
		}
	}
}
