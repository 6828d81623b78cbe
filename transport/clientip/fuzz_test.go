package clientip

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzClientIP resolves arbitrary RemoteAddr and X-Forwarded-For values
// with 127.0.0.0/8, ::1 and 10.0.0.0/8 as trusted proxies. Whatever they
// hold: an unparsable peer gives an unknown client; an untrusted peer is
// the client whatever the header says; a client that is loopback or a
// trusted proxy comes only from a header whose every hop is such an
// address; a known client is always one of the hops, never the proxy
// standing in for a hop it could not read; and nothing that is not an address literal parses as one.
func FuzzClientIP(f *testing.F) {
	for _, seed := range []struct{ remote, xff string }{
		{"127.0.0.1:1000", "unknown"},
		{"127.0.0.1:1000", "unix:"},
		{"127.0.0.1:1000", ""},
		{"127.0.0.1:1000", " , "},
		{"127.0.0.1:1000", "198.51.100.7, garbage, 10.4.4.4"},
		{"127.0.0.1:1000", "198.51.100.7, 10.4.4.4"},
		{"127.0.0.1:1000", "127.0.0.2, 10.4.4.4"},
		{"[::1]:1000", "[2001:db8::1]:443, [::1]"},
		{"[::ffff:127.0.0.1]:1", "::ffff:10.0.0.1"},
		{"10.1.1.1:1", "fe80::1%eth0"},
		{"10.1.1.1:1", "[::1"},
		{"10.1.1.1:1", "127.0.0.1:99999"},
		{"203.0.113.9:1000", "127.0.0.1"},
		{"not an address", "127.0.0.1"},
		{"", ""},
	} {
		f.Add(seed.remote, seed.xff)
	}
	trusted, err := ParsePrefixes([]string{"127.0.0.0/8", "::1", "10.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	r := New(trusted)
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		req.Header["X-Forwarded-For"] = []string{xff}
		got := r.ClientIP(req)

		for _, s := range append(strings.Split(xff, ","), remote) {
			s = strings.TrimSpace(s)
			if a := parseHost(s); a.IsValid() {
				lit, _, _ := strings.Cut(s, "%")
				if strings.Trim(lit, "0123456789abcdefABCDEF.:[]") != "" {
					t.Fatalf("parseHost(%q) = %v: not an address literal", s, a)
				}
				if a.Zone() != "" || a.Is4In6() {
					t.Fatalf("parseHost(%q) = %v: want no zone, IPv4 unmapped", s, a)
				}
			}
		}

		peer := parseHost(remote)
		switch {
		case !peer.IsValid():
			if got.IsValid() {
				t.Fatalf("unparsable RemoteAddr %q: client %v, want unknown", remote, got)
			}
			return
		case !r.Trusted(peer):
			if got != peer {
				t.Fatalf("RemoteAddr %q, X-Forwarded-For %q ignored: client %v, want the peer %v", remote, xff, got, peer)
			}
			return
		}
		hops := strings.Split(xff, ",")
		allTrusted, named := true, false
		for _, h := range hops {
			a := parseHost(strings.TrimSpace(h))
			allTrusted = allTrusted && a.IsValid() && r.Trusted(a)
			named = named || (a.IsValid() && a == got)
		}
		if got.IsValid() && !named {
			t.Fatalf("X-Forwarded-For %q via %q: client %v is none of its hops", xff, remote, got)
		}
		if (got.IsLoopback() || r.Trusted(got)) && !allTrusted {
			t.Fatalf("X-Forwarded-For %q via %q: client %v is loopback or trusted, but not every hop is a trusted address", xff, remote, got)
		}
		if last := parseHost(strings.TrimSpace(hops[len(hops)-1])); !last.IsValid() && got.IsValid() {
			t.Fatalf("X-Forwarded-For %q via %q: rightmost hop unreadable, client %v, want unknown", xff, remote, got)
		}
	})
}
