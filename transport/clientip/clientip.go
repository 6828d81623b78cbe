// Package clientip finds the address of the client behind an HTTP request:
// the TCP peer, or, when the peer is a trusted proxy, the last address in
// X-Forwarded-For that is not a trusted proxy. Limits, logs and the
// loopback rules of PROTOCOL.md use it, so that a client cannot choose its
// own address by sending the header, and a reverse proxy on the same host
// does not make every client look local.
//
// It fails closed: when a hop it must read is not an address (a proxy's
// "unknown", a Unix socket such as "unix:", an empty entry, garbage), the
// client is unknown and ClientIP returns the invalid netip.Addr{}, never
// the proxy's own address. An invalid address is not loopback (no
// anonymous publishing) and not a trusted proxy, and package limit counts
// every unknown client in one shared group. Only X-Forwarded-For is read;
// the Forwarded header (RFC 7239) is ignored.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds client addresses. The zero value trusts no proxy.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a resolver that honours X-Forwarded-For from peers in
// trusted.
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: append([]netip.Prefix(nil), trusted...)}
}

// ParsePrefixes reads a list of CIDR prefixes; a bare address stands for
// itself (/32 or /128).
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix nor an address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Trusted reports whether a is one of the trusted proxies.
func (r *Resolver) Trusted(a netip.Addr) bool {
	if r == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the client's address: the TCP peer of req, unless the
// peer is a trusted proxy; then X-Forwarded-For is read from its right
// end, skipping trusted proxies, and the first other address is the
// client. When every hop is trusted the leftmost is the client. The
// result is invalid (the client is unknown) when req.RemoteAddr is not an
// address, or when the walk meets a hop that is not one ("unknown",
// "unix:", an empty entry, garbage): it fails closed rather than fall
// back to a proxy's address, which may be loopback.
func (r *Resolver) ClientIP(req *http.Request) netip.Addr {
	peer := parseHost(req.RemoteAddr)
	if !peer.IsValid() || !r.Trusted(peer) {
		return peer
	}
	hops := req.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a := parseHost(strings.TrimSpace(parts[j]))
			if !a.IsValid() {
				return netip.Addr{}
			}
			client = a
			if !r.Trusted(a) {
				return a
			}
		}
	}
	return client
}

// parseHost reads "addr", "addr:port", "[v6]" or "[v6]:port", the port
// a number, and returns the address without zone, IPv4-mapped addresses
// as IPv4; anything else is the invalid address.
func parseHost(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
		if !strings.Contains(s, ":") {
			return netip.Addr{} // brackets are for IPv6 only
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}
