package admit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// originAllowed applies the Origin rule: AllowedOrigins, or by default
// only the node's own pages (see ownOrigin). A request with no Origin
// (not from a browser) is not checked.
func (d *Door) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(d.cfg.AllowedOrigins) == 0 {
		return d.ownOrigin(r, origin)
	}
	for _, a := range d.cfg.AllowedOrigins {
		if a == "*" || originMatches(a, origin) {
			return true
		}
	}
	return false
}

// originMatches reports whether origin (scheme://host[:port]) matches an
// allow-list entry: an exact origin, or a pattern whose host starts with
// "*." and matches any subdomain of the rest at any depth
// (https://*.example.com matches https://a.example.com and
// https://a.b.example.com, not https://example.com). Scheme and port must
// match exactly; case does not matter.
func originMatches(entry, origin string) bool {
	entry = strings.TrimSuffix(entry, "/")
	if strings.EqualFold(entry, origin) {
		return true
	}
	scheme, host, ok := strings.Cut(entry, "://")
	if !ok || !strings.HasPrefix(host, "*.") {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || !strings.EqualFold(u.Scheme, scheme) || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	suffix := strings.ToLower(host[1:]) // ".example.com[:port]"
	got := strings.ToLower(u.Host)
	if !strings.HasSuffix(got, suffix) {
		return false
	}
	sub := got[:len(got)-len(suffix)]
	if sub == "" || strings.HasPrefix(sub, ".") || strings.HasSuffix(sub, ".") || strings.Contains(sub, "..") {
		return false
	}
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ownOrigin is the default Origin rule: origin is one of the node's own
// pages. Its host:port must be the request's Host (a page on another port
// of the same host is another origin), and its host must be a name of the
// node that no DNS answer can give to someone else: a loopback name or
// address, the address the connection came in on, or one of PublicHosts.
// Host alone proves nothing: after DNS rebinding, a page at
// http://evil.example:8080 reaches the node with Host evil.example:8080.
// A loopback name or address (the one the connection came in on
// included) counts only for a local client (clientip.Client.Local: the
// TCP peer itself is loopback, and no proxy header names another
// client): through a proxy, "localhost" is the browser's host, not the
// node's. PublicHosts count for every client.
func (d *Door) ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" ||
		!strings.EqualFold(u.Host, r.Host) {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if host == "localhost" && d.resolver.Resolve(r).Local() {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.IsLoopback() {
			if d.resolver.Resolve(r).Local() {
				return true
			}
		} else if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ap, err := netip.ParseAddrPort(local.String()); err == nil && ap.Addr().WithZone("").Unmap() == a {
				return true
			}
		}
	}
	for _, h := range d.cfg.PublicHosts {
		if strings.EqualFold(strings.Trim(strings.TrimSuffix(h, "."), "[]"), host) {
			return true
		}
	}
	return false
}

// ValidOrigin checks an -allowed-origins entry: "*", an exact origin
// scheme://host[:port], or a pattern scheme://*.domain[:port].
func ValidOrigin(entry string) error {
	if entry == "*" {
		return nil
	}
	scheme, host, ok := strings.Cut(strings.TrimSuffix(entry, "/"), "://")
	if !ok || (scheme != "http" && scheme != "https") || host == "" {
		return fmt.Errorf("%q: an origin is *, scheme://host[:port] or scheme://*.domain[:port]", entry)
	}
	rest := strings.TrimPrefix(host, "*.")
	if rest == "" || strings.ContainsAny(rest, "*/?#@") {
		return fmt.Errorf("%q: a wildcard may only open the host, as in https://*.example.com", entry)
	}
	return nil
}
