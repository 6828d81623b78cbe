package clientip_test

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/tidings-io/tidings/transport/clientip"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted, err := clientip.ParsePrefixes([]string{"10.0.0.0/8", "127.0.0.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := clientip.New(trusted)
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer: header ignored", "203.0.113.9:1000", []string{"1.2.3.4"}, "203.0.113.9"},
		{"no header", "10.1.1.1:1000", nil, "10.1.1.1"},
		{"trusted proxy", "10.1.1.1:1000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client spoofs a left entry", "10.1.1.1:1000", []string{"1.1.1.1, 198.51.100.7"}, "198.51.100.7"},
		{"two trusted hops", "127.0.0.1:1000", []string{"198.51.100.7, 10.2.2.2"}, "198.51.100.7"},
		{"several headers", "10.1.1.1:1000", []string{"1.1.1.1", "198.51.100.7, 10.3.3.3"}, "198.51.100.7"},
		{"all hops trusted", "10.1.1.1:1000", []string{"10.9.9.9, 10.8.8.8"}, "10.9.9.9"},
		{"hop with a port", "10.1.1.1:1000", []string{"198.51.100.7:5555"}, "198.51.100.7"},
		{"IPv6 hop", "[fd00::1]:1000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4-mapped peer", "[::ffff:10.1.1.1]:1000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"loopback spoofed by an untrusted peer", "203.0.113.9:1000", []string{"127.0.0.1"}, "203.0.113.9"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tt.remote
		for _, h := range tt.xff {
			req.Header.Add("X-Forwarded-For", h)
		}
		if got := r.ClientIP(req); got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: ClientIP = %v, want %s", tt.name, got, tt.want)
		}
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "not an address"
	if got := r.ClientIP(req); got.IsValid() {
		t.Errorf("unparsable RemoteAddr: %v, want invalid", got)
	}
	var zero clientip.Resolver
	req.RemoteAddr = "10.1.1.1:1"
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	if got := zero.ClientIP(req); got != netip.MustParseAddr("10.1.1.1") {
		t.Errorf("zero Resolver trusts a proxy: %v", got)
	}
	if _, err := clientip.ParsePrefixes([]string{"10.0.0.0/33"}); err == nil {
		t.Error("ParsePrefixes accepted 10.0.0.0/33")
	}
}

// TestUnparsableHopFailsClosed: a hop a trusted proxy could not name
// ("unknown", a Unix socket, garbage, an empty entry) makes the client
// unknown: an invalid address, which is never loopback and never a trusted
// proxy, not the proxy's own address.
func TestUnparsableHopFailsClosed(t *testing.T) {
	t.Parallel()
	trusted, err := clientip.ParsePrefixes([]string{"127.0.0.0/8", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := clientip.New(trusted)
	for _, xff := range [][]string{
		{"unknown"},
		{"unix:"},
		{"unix:/run/proxy.sock"},
		{"garbage"},
		{""},
		{" "},
		{"198.51.100.7,"},
		{"198.51.100.7, , 10.4.4.4"},
		{"198.51.100.7, garbage, 10.4.4.4"},
		{"198.51.100.7", "unknown"},
		{"_hidden"},
		{"127.0.0.1 garbage"},
		{"[::1"},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = "127.0.0.1:1000"
		for _, h := range xff {
			req.Header.Add("X-Forwarded-For", h)
		}
		got := r.ClientIP(req)
		if got.IsValid() || got.IsLoopback() || r.Trusted(got) {
			t.Errorf("X-Forwarded-For %q via a trusted loopback proxy: client %v, want invalid (unknown)", xff, got)
		}
	}
}

// resolve builds a request from remote with the given header lines and
// resolves it with r.
func resolve(r *clientip.Resolver, remote string, header map[string][]string) clientip.Client {
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = remote
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return r.Resolve(req)
}

// TestForwarded reads RFC 7239 for= nodes from trusted peers: quoted
// IPv6 with a port, IPv4 with a port, several elements and field lines,
// other parameters and case around them.
func TestForwarded(t *testing.T) {
	t.Parallel()
	trusted, err := clientip.ParsePrefixes([]string{"10.0.0.0/8", "127.0.0.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := clientip.New(trusted)
	for _, tt := range []struct {
		name   string
		remote string
		fwd    []string
		want   string
	}{
		{"untrusted peer: header ignored", "203.0.113.9:1000", []string{"for=1.2.3.4"}, "203.0.113.9"},
		{"IPv4 token", "10.1.1.1:1000", []string{"for=198.51.100.7"}, "198.51.100.7"},
		{"quoted IPv4 with port", "10.1.1.1:1000", []string{`for="198.51.100.7:47011"`}, "198.51.100.7"},
		{"quoted IPv6 with port", "10.1.1.1:1000", []string{`for="[2001:db8::1]:4711"`}, "2001:db8::1"},
		{"quoted IPv6", "10.1.1.1:1000", []string{`for="[2001:db8::1]"`}, "2001:db8::1"},
		{"obfuscated port", "10.1.1.1:1000", []string{`for="[2001:db8::1]:_p0rt"`}, "2001:db8::1"},
		{"unquoted bracketed IPv6 (as some proxies write it)", "10.1.1.1:1000", []string{`for=[2001:db8::1]:4711`}, "2001:db8::1"},
		{"unquoted bare IPv6 (as some proxies write it)", "10.1.1.1:1000", []string{`for=2001:db8::1`}, "2001:db8::1"},
		{"other parameters, any case", "10.1.1.1:1000", []string{`Proto=https; FOR=198.51.100.7 ;by="[fd00::1]";host="a.example"`}, "198.51.100.7"},
		{"client spoofs a left element", "10.1.1.1:1000", []string{"for=1.1.1.1, for=198.51.100.7"}, "198.51.100.7"},
		{"two trusted hops", "127.0.0.1:1000", []string{`for=198.51.100.7;proto=http, for="10.2.2.2:80"`}, "198.51.100.7"},
		{"several field lines", "10.1.1.1:1000", []string{"for=1.1.1.1", `for=198.51.100.7, for="[fd00::3]"`}, "198.51.100.7"},
		{"all hops trusted", "10.1.1.1:1000", []string{"for=10.9.9.9, for=10.8.8.8"}, "10.9.9.9"},
		{"quoted comma on the left", "10.1.1.1:1000", []string{`for="x,y";a="\"q\\", for=198.51.100.7`}, "198.51.100.7"},
		{"unreadable line on the left, not reached", "10.1.1.1:1000", []string{`for="1.1.1.1`, "for=198.51.100.7"}, "198.51.100.7"},
		{"IPv4-mapped node", "10.1.1.1:1000", []string{`for="[::ffff:198.51.100.7]"`}, "198.51.100.7"},
		{"proto only: names no client, the peer is", "10.1.1.1:1000", []string{"proto=https;host=a.example"}, "10.1.1.1"},
	} {
		c := resolve(r, tt.remote, map[string][]string{"Forwarded": tt.fwd})
		if c.Addr != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: Forwarded %q from %s: client %v, want %s", tt.name, tt.fwd, tt.remote, c.Addr, tt.want)
		}
		if c.Local() {
			t.Errorf("%s: a request with a Forwarded header is local", tt.name)
		}
	}
}

// TestForwardedFailsClosed: a for= node that is not an address
// ("unknown", an obfuscated identifier, a Unix socket), an element
// without for=, and a field that is not RFC 7239 make the client unknown
// when the walk reaches them, never the proxy's own (loopback) address.
func TestForwardedFailsClosed(t *testing.T) {
	t.Parallel()
	r := clientip.New(clientip.LoopbackRanges())
	for _, fwd := range [][]string{
		{"for=unknown"},
		{`for="unknown"`},
		{"for=UNKNOWN"},
		{"for=_hidden"},
		{`for="_SEVKISEK"`},
		{`for="_gazonk:4711"`},
		{`for="unix:/run/proxy.sock"`},
		{`for=""`},
		{"for=198.51.100.7, proto=https"},
		{"for=198.51.100.7,"},
		{"for=198.51.100.7, , for=127.0.0.2"},
		{"for=198.51.100.7, for=garbage, for=127.0.0.2"},
		{"for=198.51.100.7", "for=unknown"},
		{`for="198.51.100.7`},
		{`for="198.51.100.7"x`},
		{`for=198.51.100.7 x`},
		{"for=198.51.100.7;for=198.51.100.8"},
		{"for"},
		{"=198.51.100.7"},
		{"for=198.51.100.7; =1"},
		{`for="[2001:db8::1"`},
		{`for="[2001:db8::1]x"`},
		{`for="[198.51.100.7]"`},
		{`for="198.51.100.7:99999"`},
		{`for="198.51.100.7:"`},
		{`for="198.51.100.7:_"`},
		{`for="2001:db8::1:4711:x"`},
		{"for=\"198.51.100.7\x01\""},
		{`for="198.51.100.7\`},
	} {
		c := resolve(r, "127.0.0.1:1000", map[string][]string{"Forwarded": fwd})
		if c.Addr.IsValid() || !c.Forwarded || c.Local() {
			t.Errorf("Forwarded %q via a trusted loopback proxy: client %v (forwarded %v, local %v), want unknown", fwd, c.Addr, c.Forwarded, c.Local())
		}
	}
}

// TestForwardedAndXForwardedFor: each header is walked on its own, never
// hop by hop with the other. A peer that sends both must name the same
// client in each, else the client is unknown: a proxy that writes one
// and passes the other through from the client cannot be made to name
// the client's choice.
func TestForwardedAndXForwardedFor(t *testing.T) {
	t.Parallel()
	trusted, err := clientip.ParseTrusted([]string{"private", "loopback"})
	if err != nil {
		t.Fatal(err)
	}
	r := clientip.New(trusted)
	for _, tt := range []struct {
		name     string
		xff, fwd []string
		want     string // "" for unknown
	}{
		{"both agree", []string{"198.51.100.7"}, []string{"for=198.51.100.7"}, "198.51.100.7"},
		{"both agree after trusted hops", []string{"198.51.100.7, 10.0.0.2"}, []string{`for=198.51.100.7, for="[fd00::2]:80"`}, "198.51.100.7"},
		{"XFF proxy, client forges Forwarded", []string{"198.51.100.7"}, []string{"for=203.0.113.66"}, ""},
		{"Forwarded proxy, client forges XFF", []string{"203.0.113.66"}, []string{"for=198.51.100.7"}, ""},
		{"hops are not mixed", []string{"10.0.0.9"}, []string{"for=198.51.100.7"}, ""},
		{"Forwarded without for=: XFF alone", []string{"198.51.100.7"}, []string{"proto=https"}, "198.51.100.7"},
		{"XFF alone", []string{"198.51.100.7"}, nil, "198.51.100.7"},
		{"Forwarded alone", nil, []string{"for=198.51.100.7"}, "198.51.100.7"},
		{"both unknown", []string{"unknown"}, []string{"for=unknown"}, ""},
		{"a malformed Forwarded with a good XFF", []string{"198.51.100.7"}, []string{`for="`}, ""},
	} {
		c := resolve(r, "10.0.0.1:1000", map[string][]string{"X-Forwarded-For": tt.xff, "Forwarded": tt.fwd})
		want := netip.Addr{}
		if tt.want != "" {
			want = netip.MustParseAddr(tt.want)
		}
		if c.Addr != want || !c.Forwarded {
			t.Errorf("%s: X-Forwarded-For %q, Forwarded %q: client %v (forwarded %v), want %v", tt.name, tt.xff, tt.fwd, c.Addr, c.Forwarded, want)
		}
	}
}

// TestLocal: only a loopback TCP peer whose request names no other client
// is local; an address from a header never is, 127.0.0.1 included,
// whether the peer is trusted or not.
func TestLocal(t *testing.T) {
	t.Parallel()
	trusting := clientip.New(clientip.LoopbackRanges())
	var none clientip.Resolver
	for _, tt := range []struct {
		name   string
		remote string
		header map[string][]string
		local  bool
	}{
		{"loopback peer", "127.0.0.1:1000", nil, true},
		{"IPv6 loopback peer", "[::1]:1000", nil, true},
		{"IPv4-mapped loopback peer", "[::ffff:127.0.0.1]:1000", nil, true},
		{"private peer", "10.0.0.1:1000", nil, false},
		{"forwarded 127.0.0.1", "127.0.0.1:1000", map[string][]string{"X-Forwarded-For": {"127.0.0.1"}}, false},
		{"forwarded ::1", "127.0.0.1:1000", map[string][]string{"Forwarded": {`for="[::1]"`}}, false},
		{"loopback peer with a proxy's X-Real-IP", "127.0.0.1:1000", map[string][]string{"X-Real-Ip": {"127.0.0.1"}}, false},
		{"loopback peer with an empty X-Forwarded-For", "127.0.0.1:1000", map[string][]string{"X-Forwarded-For": {""}}, false},
		{"loopback peer with Forwarded proto only", "127.0.0.1:1000", map[string][]string{"Forwarded": {"proto=https"}}, false},
	} {
		for _, r := range []*clientip.Resolver{trusting, &none} {
			c := resolve(r, tt.remote, tt.header)
			if c.Local() != tt.local {
				t.Errorf("%s (trusting loopback %v): Local %v, want %v; client %+v", tt.name, r.Trusted(netip.MustParseAddr("127.0.0.1")), c.Local(), tt.local, c)
			}
		}
	}
	// The resolved address may well be loopback; it is not local.
	c := resolve(trusting, "127.0.0.1:1000", map[string][]string{"X-Forwarded-For": {"127.0.0.1"}})
	if !c.Addr.IsLoopback() || !c.Forwarded || c.Local() {
		t.Errorf("forwarded 127.0.0.1 via a trusted proxy: %+v, want the loopback address, forwarded, not local", c)
	}
	// An untrusted peer's headers are not believed, but make it not local.
	c = resolve(&none, "127.0.0.1:1000", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}})
	if c.Addr != netip.MustParseAddr("127.0.0.1") || c.Forwarded || !c.Proxied || c.Local() {
		t.Errorf("X-Forwarded-For from an untrusted loopback peer: %+v, want the peer, not forwarded, proxied, not local", c)
	}
}

func TestParseTrusted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		list    []string
		trusted []string
		not     []string
	}{
		{[]string{"private"}, []string{"10.1.2.3", "172.31.255.255", "192.168.0.1", "100.64.0.1", "100.127.255.255", "fd12::1", "fc00::1", "::ffff:10.0.0.1"},
			[]string{"127.0.0.1", "::1", "172.32.0.1", "100.128.0.1", "203.0.113.1", "2001:db8::1", "169.254.1.1", "fe80::1"}},
		{[]string{"LOOPBACK"}, []string{"127.0.0.1", "127.255.0.9", "::1"}, []string{"10.0.0.1", "::2"}},
		{[]string{"Private", "loopback", "203.0.113.0/24", "198.51.100.7"}, []string{"10.0.0.1", "127.0.0.1", "203.0.113.200", "198.51.100.7"}, []string{"198.51.100.8"}},
		{[]string{"none"}, nil, []string{"10.0.0.1", "127.0.0.1", "203.0.113.1"}},
		{nil, nil, []string{"10.0.0.1", "127.0.0.1"}},
	} {
		prefixes, err := clientip.ParseTrusted(tt.list)
		if err != nil {
			t.Fatalf("ParseTrusted(%q): %v", tt.list, err)
		}
		r := clientip.New(prefixes)
		for _, a := range tt.trusted {
			if !r.Trusted(netip.MustParseAddr(a)) {
				t.Errorf("ParseTrusted(%q) does not trust %s", tt.list, a)
			}
		}
		for _, a := range tt.not {
			if r.Trusted(netip.MustParseAddr(a)) {
				t.Errorf("ParseTrusted(%q) trusts %s", tt.list, a)
			}
		}
	}
	for _, list := range [][]string{{"none", "private"}, {"10.0.0.0/8", "none"}, {"privat"}, {"10.0.0.0/33"}, {"proxy.local"}, {""}} {
		if _, err := clientip.ParseTrusted(list); err == nil {
			t.Errorf("ParseTrusted(%q) accepted it", list)
		}
	}
}
