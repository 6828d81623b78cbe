package clientip

import (
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzClientIP resolves arbitrary RemoteAddr, X-Forwarded-For and
// Forwarded values (an empty value: no such header) with 127.0.0.0/8,
// ::1 and 10.0.0.0/8 as trusted proxies. Whatever they hold: an
// unparsable peer gives an unknown client; an untrusted peer is the
// client whatever the headers say; a request with either header is never
// local, and a local one has a loopback peer; a client that is loopback
// or a trusted proxy comes only from headers whose every hop is such an
// address; a known client read from the headers is one of the hops of
// each header the peer sent, never the proxy standing in for a hop it
// could not read, nor a hop of one header that the other does not name;
// and nothing that is not an address literal parses as one.
func FuzzClientIP(f *testing.F) {
	for _, seed := range []struct{ remote, xff, fwd string }{
		{"127.0.0.1:1000", "unknown", ""},
		{"127.0.0.1:1000", "unix:", ""},
		{"127.0.0.1:1000", " , ", ""},
		{"127.0.0.1:1000", "198.51.100.7, garbage, 10.4.4.4", ""},
		{"127.0.0.1:1000", "198.51.100.7, 10.4.4.4", ""},
		{"127.0.0.1:1000", "127.0.0.2, 10.4.4.4", ""},
		{"[::1]:1000", "[2001:db8::1]:443, [::1]", ""},
		{"[::ffff:127.0.0.1]:1", "::ffff:10.0.0.1", ""},
		{"10.1.1.1:1", "fe80::1%eth0", ""},
		{"10.1.1.1:1", "[::1", ""},
		{"10.1.1.1:1", "127.0.0.1:99999", ""},
		{"203.0.113.9:1000", "127.0.0.1", ""},
		{"not an address", "127.0.0.1", ""},
		{"", "", ""},
		{"10.1.1.1:1", "", `for="[2001:db8::1]:4711"`},
		{"10.1.1.1:1", "", `for=198.51.100.7;proto=https, for="10.0.0.2:80"`},
		{"10.1.1.1:1", "", `for=unknown`},
		{"10.1.1.1:1", "", `for="_hidden"`},
		{"10.1.1.1:1", "", `for=127.0.0.1`},
		{"10.1.1.1:1", "", `for="x,y";a="\"q\\", for=198.51.100.7`},
		{"10.1.1.1:1", "", `for="198.51.100.7`},
		{"10.1.1.1:1", "", `proto=https`},
		{"10.1.1.1:1", "198.51.100.7", `for=198.51.100.7`},
		{"10.1.1.1:1", "198.51.100.7", `for=203.0.113.66`},
		{"127.0.0.1:1", "127.0.0.1", `for="[::1]"`},
	} {
		f.Add(seed.remote, seed.xff, seed.fwd)
	}
	trusted, err := ParsePrefixes([]string{"127.0.0.0/8", "::1", "10.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	r := New(trusted)
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		if xff != "" {
			req.Header["X-Forwarded-For"] = []string{xff}
		}
		if fwd != "" {
			req.Header["Forwarded"] = []string{fwd}
		}
		c := r.Resolve(req)
		got := c.Addr
		if got != r.ClientIP(req) {
			t.Fatalf("ClientIP %v, Resolve %v", r.ClientIP(req), got)
		}

		for _, s := range append(strings.Split(xff, ","), remote) {
			s = strings.TrimSpace(s)
			checkLiteral(t, "parseHost", s, parseHost(s), s)
		}
		fors, _, fwdOK := forwardedLine(fwd)
		for _, s := range fors {
			host := s
			if strings.HasPrefix(host, "[") {
				host, _, _ = strings.Cut(host[1:], "]")
			} else if strings.Count(host, ":") == 1 {
				host, _, _ = strings.Cut(host, ":")
			}
			checkLiteral(t, "parseNode", s, parseNode(s), host)
		}

		peer := parseHost(remote)
		if c.Peer != peer {
			t.Fatalf("Peer %v, want %v", c.Peer, peer)
		}
		if c.Local() && (xff != "" || fwd != "" || !peer.IsLoopback()) {
			t.Fatalf("RemoteAddr %q, X-Forwarded-For %q, Forwarded %q: local", remote, xff, fwd)
		}
		if c.Forwarded && c.Local() {
			t.Fatalf("client %v read from a header is local", got)
		}
		switch {
		case !peer.IsValid():
			if got.IsValid() || c.Forwarded {
				t.Fatalf("unparsable RemoteAddr %q: client %v, want unknown", remote, got)
			}
			return
		case !r.Trusted(peer):
			if got != peer || c.Forwarded {
				t.Fatalf("RemoteAddr %q, headers %q and %q ignored: client %v, want the peer %v", remote, xff, fwd, got, peer)
			}
			return
		}
		var used [][]netip.Addr
		if xff != "" {
			used = append(used, xffHops([]string{xff}))
		}
		fwdHops, named := forwardedHops([]string{fwd})
		if fwd != "" && named {
			used = append(used, fwdHops)
		}
		if !fwdOK && fwd != "" && !named {
			t.Fatalf("Forwarded %q is not valid, yet names no client", fwd)
		}
		if len(used) == 0 {
			if got != peer || c.Forwarded {
				t.Fatalf("no header naming a client: client %v, want the peer %v", got, peer)
			}
			return
		}
		if !c.Forwarded {
			t.Fatalf("headers %q and %q from a trusted peer: client %v not marked forwarded", xff, fwd, got)
		}
		for _, hops := range used {
			allTrusted := true
			for _, a := range hops {
				allTrusted = allTrusted && a.IsValid() && r.Trusted(a)
			}
			if got.IsValid() && !slices.Contains(hops, got) {
				t.Fatalf("headers %q and %q via %q: client %v is none of the hops %v", xff, fwd, remote, got, hops)
			}
			if (got.IsLoopback() || r.Trusted(got)) && !allTrusted {
				t.Fatalf("headers %q and %q via %q: client %v is loopback or trusted, but not every hop of %v is a trusted address", xff, fwd, remote, got, hops)
			}
			if !hops[len(hops)-1].IsValid() && got.IsValid() {
				t.Fatalf("headers %q and %q via %q: rightmost hop unreadable, client %v, want unknown", xff, fwd, remote, got)
			}
		}
	})
}

// checkLiteral fails t when a, what parse made of s, is an address though
// lit (the address part of s) is not an address literal, or is not
// normalised (no zone, IPv4 unmapped).
func checkLiteral(t *testing.T, parse, s string, a netip.Addr, lit string) {
	t.Helper()
	if !a.IsValid() {
		return
	}
	lit, _, _ = strings.Cut(lit, "%")
	if strings.Trim(lit, "0123456789abcdefABCDEF.:[]") != "" {
		t.Fatalf("%s(%q) = %v: not an address literal", parse, s, a)
	}
	if a.Zone() != "" || a.Is4In6() {
		t.Fatalf("%s(%q) = %v: want no zone, IPv4 unmapped", parse, s, a)
	}
}
