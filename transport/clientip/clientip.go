// Package clientip finds the client behind an HTTP request: the TCP peer,
// or, when the peer is a trusted proxy, the client that proxy names in
// X-Forwarded-For or Forwarded (RFC 7239). Limits and logs count clients
// by it, so that a client cannot choose its own address by sending a
// header, and a reverse proxy does not make every client one.
//
// Each header is walked on its own from its right end, skipping trusted
// proxies; the first other address is the client. The two are never
// mixed: a trusted peer that sends one of them names the client with it;
// one that sends both must name the same client in each, else the client
// is unknown. (A proxy that writes one header usually passes the other
// through from the client as it came: reading the other first, or
// whichever is present, would let the client choose its address.) A
// Forwarded header whose every element lacks for= names no client and is
// ignored.
//
// It fails closed: when a hop it must read is not an address (a proxy's
// "unknown" or an obfuscated "_name", a Unix socket such as "unix:", an
// empty entry, an element without for=, garbage), or when a Forwarded
// field is not valid RFC 7239 syntax, the client is unknown and its
// address the invalid netip.Addr{}, never the proxy's own address. An
// invalid address is not loopback and not a trusted proxy, and package
// limit counts every unknown client in one shared group.
//
// No address read from a header is ever local: the loopback privileges of
// PROTOCOL.md (anonymous publishing, the loopback names of the default
// Origin rule) need Client.Local, a loopback TCP peer whose request names
// no other client.
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

// New returns a resolver that believes the X-Forwarded-For and Forwarded
// headers of peers in trusted.
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: append([]netip.Prefix(nil), trusted...)}
}

// The keywords of ParseTrusted.
const (
	// KeywordPrivate stands for PrivateRanges.
	KeywordPrivate = "private"
	// KeywordLoopback stands for LoopbackRanges.
	KeywordLoopback = "loopback"
	// KeywordNone stands for no proxy at all; it must stand alone.
	KeywordNone = "none"
)

// PrivateRanges returns the private networks, where the load balancers,
// ingress controllers and container networks in front of a node live:
// 10.0.0.0/8, 172.16.0.0/12 and 192.168.0.0/16 (RFC 1918), 100.64.0.0/10
// (RFC 6598 shared address space: carrier-grade NAT, and the pod or
// overlay addresses of many clusters) and fc00::/7 (RFC 4193 unique
// local). Loopback is not among them (LoopbackRanges).
func PrivateRanges() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("fc00::/7"),
	}
}

// LoopbackRanges returns 127.0.0.0/8 and ::1/128.
func LoopbackRanges() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// ParseTrusted reads a list of trusted proxies: CIDR prefixes, addresses
// (each standing for itself), and the keywords "private" (PrivateRanges)
// and "loopback" (LoopbackRanges), in any case; or "none" alone, for no
// proxy. An empty list is no proxy too.
func ParseTrusted(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch {
		case strings.EqualFold(s, KeywordNone):
			if len(list) > 1 {
				return nil, fmt.Errorf("%q stands alone: it means no proxy at all", KeywordNone)
			}
			return []netip.Prefix{}, nil
		case strings.EqualFold(s, KeywordPrivate):
			out = append(out, PrivateRanges()...)
		case strings.EqualFold(s, KeywordLoopback):
			out = append(out, LoopbackRanges()...)
		default:
			p, err := ParsePrefixes([]string{s})
			if err != nil {
				return nil, fmt.Errorf("%w, nor %s, %s or %s", err, KeywordPrivate, KeywordLoopback, KeywordNone)
			}
			out = append(out, p...)
		}
	}
	return out, nil
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

// Client is what a Resolver learnt about the client of a request.
type Client struct {
	// Addr is the client's address, the one limits and logs count: the
	// TCP peer, or the client a trusted peer named. It is invalid when
	// the client is unknown.
	Addr netip.Addr
	// Peer is the TCP peer; invalid when RemoteAddr is not an address.
	Peer netip.Addr
	// Forwarded reports that Addr is what a trusted peer's header says
	// (or unknown because the header could not be read), not the peer.
	Forwarded bool
	// Proxied reports that the request carries a header proxies name a
	// client with (Forwarded, X-Forwarded-For, X-Real-IP), believed or
	// not.
	Proxied bool
}

// Local reports whether the client is on the node's own host, for the
// loopback privileges: the TCP peer itself is loopback, and the request
// names no other client (no Forwarded, X-Forwarded-For or X-Real-IP,
// from a trusted proxy or not). A loopback address read from a header is
// not local, and a proxy on the same host does not make its clients
// local, listed in the trusted proxies or not.
func (c Client) Local() bool { return !c.Proxied && c.Peer.IsLoopback() }

// ClientIP returns Resolve(req).Addr.
func (r *Resolver) ClientIP(req *http.Request) netip.Addr { return r.Resolve(req).Addr }

// Resolve finds the client of req: the TCP peer, unless the peer is a
// trusted proxy that sends X-Forwarded-For or a Forwarded header with
// for= parameters. Such a header is read from its right end, across its
// field lines, skipping trusted proxies, and the first other address is
// the client; when every hop is trusted, the leftmost is. When the peer
// sends both headers, each is read on its own and they must name the same
// client. The client is unknown (Addr invalid) when req.RemoteAddr is not
// an address, when the walk meets a hop that is not one, or when the two
// headers disagree: it fails closed rather than fall back to a proxy's
// address, which may be loopback.
func (r *Resolver) Resolve(req *http.Request) Client {
	peer := parseHost(req.RemoteAddr)
	h := req.Header
	c := Client{Addr: peer, Peer: peer,
		Proxied: len(h["X-Forwarded-For"]) > 0 || len(h["Forwarded"]) > 0 || len(h["X-Real-Ip"]) > 0}
	if !c.Proxied || !peer.IsValid() || !r.Trusted(peer) {
		return c
	}
	xff := h["X-Forwarded-For"]
	fwd, named := forwardedHops(h["Forwarded"])
	switch {
	case len(xff) > 0 && named:
		c.Addr = r.walk(xffHops(xff))
		if r.walk(fwd) != c.Addr {
			c.Addr = netip.Addr{}
		}
	case len(xff) > 0:
		c.Addr = r.walk(xffHops(xff))
	case named:
		c.Addr = r.walk(fwd)
	default:
		return c // X-Real-IP alone, or a Forwarded that names no client
	}
	c.Forwarded = true
	return c
}

// walk returns the client hops (left to right, at least one) name: the
// rightmost hop that is not a trusted proxy, or the leftmost when all
// are; the invalid address when a hop it reads on the way is invalid.
func (r *Resolver) walk(hops []netip.Addr) netip.Addr {
	for i := len(hops) - 1; i >= 0; i-- {
		a := hops[i]
		if !a.IsValid() || !r.Trusted(a) {
			return a
		}
	}
	return hops[0]
}

// xffHops reads the hops of X-Forwarded-For field lines, left to right;
// a hop that is not an address is the invalid address.
func xffHops(lines []string) []netip.Addr {
	var hops []netip.Addr
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ",") {
			hops = append(hops, parseHost(strings.TrimSpace(part)))
		}
	}
	return hops
}

// forwardedHops reads the for= node of each element of Forwarded field
// lines, left to right: the invalid address for an element without for=,
// a node that is not an address ("unknown", "_obfuscated", garbage), and
// in place of a whole line that is not valid RFC 7239 syntax. named
// reports whether the header names a client at all: a line is invalid, or
// an element has for=.
func forwardedHops(lines []string) (hops []netip.Addr, named bool) {
	for _, line := range lines {
		fors, hasFor, ok := forwardedLine(line)
		if !ok {
			hops = append(hops, netip.Addr{})
			named = true
			continue
		}
		named = named || hasFor
		for _, f := range fors {
			hops = append(hops, parseNode(f))
		}
	}
	return hops, named
}

// forwardedLine parses one Forwarded field line (RFC 7239 §4: elements
// separated by commas, each of pairs name=value separated by semicolons,
// a value a token or a quoted-string) and returns the for= value of each
// element, left to right, "" for an element without one; hasFor reports
// whether one had it. ok is false when the line is not valid: a pair
// that is not name=value, for= twice in an element, an unterminated
// quoted-string, bytes after a value. Unquoted values may also hold ':',
// '[' and ']', which some proxies write without the quotes they need;
// whitespace around separators is skipped.
func forwardedLine(line string) (fors []string, hasFor, ok bool) {
	i, n := 0, len(line)
	for {
		var forValue string
		seenFor := false
	pairs:
		for {
			i = skipSpace(line, i)
			switch {
			case i == n || line[i] == ',':
				break pairs
			case line[i] == ';':
				i++
				continue
			}
			start := i
			for i < n && isTchar(line[i]) {
				i++
			}
			name := line[start:i]
			isFor := strings.EqualFold(name, "for")
			i = skipSpace(line, i)
			if name == "" || i == n || line[i] != '=' {
				return nil, false, false
			}
			if isFor && seenFor {
				return nil, false, false // RFC 7239 §4: once per element
			}
			i = skipSpace(line, i+1)
			var value string
			if i < n && line[i] == '"' {
				if value, i, ok = quotedString(line, i); !ok {
					return nil, false, false
				}
			} else {
				start := i
				for i < n && (isTchar(line[i]) || line[i] == ':' || line[i] == '[' || line[i] == ']') {
					i++
				}
				if i == start {
					return nil, false, false
				}
				value = line[start:i]
			}
			if isFor {
				forValue, seenFor, hasFor = value, true, true
			}
			i = skipSpace(line, i)
			if i < n && line[i] != ';' && line[i] != ',' {
				return nil, false, false
			}
		}
		fors = append(fors, forValue)
		if i == n {
			return fors, hasFor, true
		}
		i++ // the comma
	}
}

// quotedString reads the quoted-string that opens at s[i] and returns its
// content, unescaped, and the index after its closing quote.
func quotedString(s string, i int) (value string, next int, ok bool) {
	escaped := false
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '\\':
			if j+1 == len(s) {
				return "", 0, false
			}
			escaped = true
			j++
		case c == '"':
			value = s[i+1 : j]
			if escaped {
				var b strings.Builder
				for k := 0; k < len(value); k++ {
					if value[k] == '\\' {
						k++
					}
					b.WriteByte(value[k])
				}
				value = b.String()
			}
			return value, j + 1, true
		case c < ' ' && c != '\t' || c == 0x7f:
			return "", 0, false
		}
	}
	return "", 0, false
}

// skipSpace returns the index of the first byte at or after i that is not
// a space or a tab.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isTchar reports whether c may appear in an RFC 9110 token.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseNode reads the node of a Forwarded for= parameter (RFC 7239 §6):
// an IPv4 address, a bracketed IPv6 address, either with a port or an
// obfuscated port ("_" and letters, digits, ".", "_", "-"), or an IPv6
// address without brackets or port as some proxies write it. It returns
// the address without zone, IPv4-mapped addresses as IPv4; "unknown", an
// obfuscated node ("_hidden") and anything else are the invalid address.
func parseNode(s string) netip.Addr {
	host := s
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}
		}
		if !strings.Contains(host, ":") {
			return netip.Addr{} // brackets are for IPv6 only
		}
	case strings.Count(s, ":") == 1:
		var port string
		host, port, _ = strings.Cut(s, ":")
		if !validPort(port) {
			return netip.Addr{}
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is4() {
			return netip.Addr{}
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

// obfuscatedPortChars are the bytes of an obfport after its "_".
const obfuscatedPortChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

// validPort reports whether s is a node-port of RFC 7239 §6: up to five
// digits, at most 65535, or "_" and letters, digits, ".", "_" or "-".
func validPort(s string) bool {
	if strings.HasPrefix(s, "_") {
		return len(s) > 1 && strings.Trim(s[1:], obfuscatedPortChars) == ""
	}
	if s == "" || len(s) > 5 {
		return false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v <= 65535
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
