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
