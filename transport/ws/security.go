package ws

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/clientip"
)

// TokenVerifier checks session tokens; *auth.Verifier implements it.
type TokenVerifier = session.TokenVerifier

// Refusal reasons, as counted in Stats.Refused and the metrics.
const (
	// RefusedOrigin: upgrade refused with 403, Origin not allowed.
	RefusedOrigin = limit.ReasonOrigin
	// RefusedToken: upgrade refused with 401, token missing or not valid.
	RefusedToken = limit.ReasonToken
	// RefusedTokenRevoked: upgrade refused with 401, the token was
	// revoked.
	RefusedTokenRevoked = limit.ReasonTokenRevoked
	// RefusedMaxSessions: upgrade refused with 503, the server is full.
	RefusedMaxSessions = limit.ReasonMaxSessions
	// RefusedIPRate: upgrade refused with 429, the address opens sessions
	// too fast.
	RefusedIPRate = limit.ReasonIPRate
	// RefusedIPConns: upgrade refused with 429, the address holds too many
	// sessions.
	RefusedIPConns = limit.ReasonIPConns
)

// refusalReasons lists the reasons in the order of the counters: the
// upgrade's, then the sessions' (session.RefusalReasons).
var refusalReasons = append([]limit.Reason{
	RefusedOrigin, RefusedToken, RefusedMaxSessions, RefusedIPRate, RefusedIPConns,
}, session.RefusalReasons...)

// tokenOf returns the session token of r: the `token` query parameter
// (browsers cannot set headers on a WebSocket), else an `Authorization:
// Bearer` header.
func tokenOf(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok)
	}
	return ""
}

// refuse answers a refused upgrade with its JSON error and counts it.
func (s *Server) refuse(w http.ResponseWriter, reason limit.Reason, status int, code, message string, retryAfter time.Duration) {
	s.refused.Add(reason)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tidings", error="invalid_token"`)
	}
	httpError(w, status, code, message)
}

// admit applies the session and address limits and the token check to an
// upgrade request from client. On success it returns what to release when
// the session ends and the token's claims (nil without a verifier); on
// refusal it has answered the request.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, client clientip.Client) (release func(), claims *auth.Claims, ok bool) {
	if max := s.cfg.MaxSessions; max > 0 {
		if s.admitted.Add(1) > int64(max) {
			s.admitted.Add(-1)
			s.refuse(w, RefusedMaxSessions, http.StatusServiceUnavailable, broker.CodeUnavailable,
				"the server holds as many sessions as it may; try again later", maxSessionsRetry)
			return nil, nil, false
		}
	} else {
		s.admitted.Add(1)
	}
	releaseIP, active, err := s.perIP.AcquireActive(client.Addr)
	if err != nil {
		s.admitted.Add(-1)
		var retry time.Duration
		if ref := (*limit.Refusal)(nil); errors.As(err, &ref) {
			retry = ref.RetryAfter
		}
		reason := RefusedIPRate
		if errors.Is(err, limit.ErrConcurrent) {
			reason = RefusedIPConns
		}
		s.refuse(w, reason, http.StatusTooManyRequests, broker.CodeRateLimited, broker.ClientError(err).Message, retry)
		return nil, nil, false
	}
	if active > crowdSessions && !client.Forwarded && !s.resolver.Trusted(client.Peer) && s.perIP.FirstCrowd(active, crowdSessions) {
		// Behind a reverse proxy that is not trusted every client has
		// the proxy's address, and the address limits throttle them all
		// as one. Logged once for the server's life (limit.FirstCrowd).
		s.log.Warn(crowdWarning, "addr", client.Addr.String(), "sessions", active, "threshold", crowdSessions)
	}
	release = func() {
		releaseIP()
		s.admitted.Add(-1)
	}
	if s.cfg.Tokens != nil {
		claims, err = s.cfg.Tokens.Verify(r.Context(), tokenOf(r))
		if err != nil {
			release()
			reason := RefusedToken
			if errors.Is(err, auth.ErrTokenRevoked) {
				reason = RefusedTokenRevoked
			}
			s.refuse(w, reason, http.StatusUnauthorized, broker.CodeUnauthorized, broker.ClientError(err).Message, 0)
			return nil, nil, false
		}
	}
	if s.cfg.Hooks.Enabled(hooks.Connect) {
		if claims, ok = s.connectHook(w, r, client, claims); !ok {
			release()
			return nil, nil, false
		}
	}
	return release, claims, true
}

// maxSessionsRetry is the Retry-After of a 503 for a full server.
const maxSessionsRetry = 5 * time.Second

// crowdSessions is how many sessions one client address, a TCP peer that
// no trusted proxy covers, may hold before admit wonders, in a warning
// logged once, whether a proxy stands in front of the node unnamed. A
// forwarded client, or a trusted peer that names no client, is not the
// sign of it.
const crowdSessions = 100

// crowdWarning is that warning.
const crowdWarning = "many sessions from one address; is a proxy in front without -trusted-proxies?"

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
func (s *Server) ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" ||
		!strings.EqualFold(u.Host, r.Host) {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if host == "localhost" && s.resolver.Resolve(r).Local() {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.IsLoopback() {
			if s.resolver.Resolve(r).Local() {
				return true
			}
		} else if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ap, err := netip.ParseAddrPort(local.String()); err == nil && ap.Addr().WithZone("").Unmap() == a {
				return true
			}
		}
	}
	for _, h := range s.cfg.PublicHosts {
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
