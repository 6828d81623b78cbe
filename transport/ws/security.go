package ws

import (
	"context"
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

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/limit"
	"golang.org/x/time/rate"
)

// TokenVerifier checks session tokens; *auth.Verifier implements it.
type TokenVerifier interface {
	// Verify returns what token grants, or an error whose text (less its
	// package prefix) may be shown to the client.
	Verify(ctx context.Context, token string) (*auth.Claims, error)
	// Leeway is the clock skew allowed on expiry: a session ends at its
	// token's exp plus Leeway.
	Leeway() time.Duration
}

// Refusal reasons, as counted in Stats.Refused and the metrics.
const (
	// RefusedOrigin: upgrade refused with 403, Origin not allowed.
	RefusedOrigin = "origin"
	// RefusedToken: upgrade refused with 401, token missing or not valid.
	RefusedToken = "token"
	// RefusedMaxSessions: upgrade refused with 503, the server is full.
	RefusedMaxSessions = "max_sessions"
	// RefusedIPRate: upgrade refused with 429, the address opens sessions
	// too fast.
	RefusedIPRate = "ip_rate"
	// RefusedIPConns: upgrade refused with 429, the address holds too many
	// sessions.
	RefusedIPConns = "ip_conns"
	// RefusedOpRate: a command or ping over the session's rate; commands
	// get `error` `rate_limited`.
	RefusedOpRate = "op_rate"
	// RefusedOpAbuse: a session closed with 1008 for exceeding its rate
	// limit repeatedly.
	RefusedOpAbuse = "op_abuse"
	// RefusedForbidden: a subscribe or publish its permissions do not
	// cover (`error` `forbidden`).
	RefusedForbidden = "forbidden"
	// RefusedSubscriptions: a subscribe over the per-session limit
	// (`error` `too_large`).
	RefusedSubscriptions = "subscriptions"
	// RefusedTokenExpired: a session closed with 1008 `token expired`.
	RefusedTokenExpired = "token_expired"
	// RefusedRefresh: a `refresh` whose token was refused.
	RefusedRefresh = "refresh"
)

// refusalReasons lists the reasons in the order of the counters.
var refusalReasons = []string{
	RefusedOrigin, RefusedToken, RefusedMaxSessions, RefusedIPRate, RefusedIPConns,
	RefusedOpRate, RefusedOpAbuse, RefusedForbidden, RefusedSubscriptions,
	RefusedTokenExpired, RefusedRefresh,
}

// codedError is an error for the client: its text is msg, and it wraps the
// broker error that broker.ErrorCode maps to the protocol code.
type codedError struct {
	kind error
	msg  string
}

func (e codedError) Error() string { return e.msg }
func (e codedError) Unwrap() error { return e.kind }

// countRefusal counts an error of a subscribe or publish that is a
// refusal by permission or limit.
func (c *conn) countRefusal(err error) {
	switch {
	case errors.Is(err, broker.ErrForbidden):
		c.srv.refused.Add(RefusedForbidden)
	case errors.Is(err, broker.ErrTooManySubscriptions):
		c.srv.refused.Add(RefusedSubscriptions)
	}
}

// refreshedFrame answers a `refresh`.
type refreshedFrame struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Expires string `json:"expires"`
}

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
func (s *Server) refuse(w http.ResponseWriter, reason string, status int, code, message string, retryAfter time.Duration) {
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
// upgrade request. On success it returns what to release when the session
// ends and the token's claims (nil without a verifier); on refusal it has
// answered the request.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, client netip.Addr) (release func(), claims *auth.Claims, ok bool) {
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
	releaseIP, err := s.perIP.Acquire(client)
	if err != nil {
		s.admitted.Add(-1)
		var ref *limit.Refusal
		errors.As(err, &ref)
		reason := RefusedIPRate
		if errors.Is(err, limit.ErrConcurrent) {
			reason = RefusedIPConns
		}
		s.refuse(w, reason, http.StatusTooManyRequests, broker.CodeRateLimited, strings.TrimPrefix(err.Error(), "limit: "), ref.RetryAfter)
		return nil, nil, false
	}
	release = func() {
		releaseIP()
		s.admitted.Add(-1)
	}
	if s.cfg.Tokens != nil {
		claims, err = s.cfg.Tokens.Verify(r.Context(), tokenOf(r))
		if err != nil {
			release()
			s.refuse(w, RefusedToken, http.StatusUnauthorized, broker.CodeUnauthorized, strings.TrimPrefix(err.Error(), "auth: "), 0)
			return nil, nil, false
		}
	}
	return release, claims, true
}

// maxSessionsRetry is the Retry-After of a 503 for a full server.
const maxSessionsRetry = 5 * time.Second

// newOpLimits returns the per-session command limiter and the allowance of
// refused commands (which refills at a tenth of the rate), or nils when
// the rate is off.
func (s *Server) newOpLimits() (ops, strikes *rate.Limiter) {
	if s.cfg.OpRate <= 0 {
		return nil, nil
	}
	return rate.NewLimiter(rate.Limit(s.cfg.OpRate), s.cfg.OpBurst),
		rate.NewLimiter(rate.Limit(s.cfg.OpRate/10), s.cfg.OpRefusals)
}

// allowOp takes one command (or ping) from the session's rate. When the
// rate is exceeded it counts the refusal and reports whether the session
// has now used up its allowance of refusals: then it must be closed.
func (c *conn) allowOp() (ok, abuse bool) {
	if c.ops == nil || c.ops.Allow() {
		return true, false
	}
	if c.strikes.Allow() {
		c.srv.refused.Add(RefusedOpRate)
		return false, false
	}
	c.srv.refused.Add(RefusedOpAbuse)
	return false, true
}

// opRefused answers a command over the rate, or closes an abusive session
// with 1008; it reports whether the reader is done.
func (c *conn) opRefused(ref string, abuse bool) bool {
	if abuse {
		c.srv.log.Info("rate limit exceeded repeatedly", "session", c.id, "remote", c.remote, "sub", c.subject)
		c.fail(ws.StatusPolicyViolation, "rate limit exceeded")
		return true
	}
	c.sendError(ref, broker.CodeRateLimited, codedError{broker.ErrRateLimited,
		fmt.Sprintf("too many commands: at most %g per second", c.srv.cfg.OpRate)})
	return false
}

// armExpiry (re)schedules the close of a session whose token expires at
// exp (plus the verifier's leeway).
func (c *conn) armExpiry(exp time.Time) {
	d := time.Until(exp.Add(c.srv.cfg.Tokens.Leeway()))
	if c.expiry == nil {
		c.expiry = time.AfterFunc(d, c.expire)
		return
	}
	c.expiry.Reset(d)
}

// expire closes the session: its token has expired.
func (c *conn) expire() {
	if c.closing() {
		return
	}
	c.srv.refused.Add(RefusedTokenExpired)
	c.srv.log.Info("token expired", "session", c.id, "remote", c.remote, "sub", c.subject)
	c.requestClose(ws.StatusPolicyViolation, "token expired", closeFail)
}

// refresh replaces the session's token. Subscriptions the new token does
// not allow are dropped, each announced by an `unsubscribed` without ref;
// then `refreshed` answers. A refused token leaves the session as it was.
func (c *conn) refresh(cmd Command) {
	if c.srv.cfg.Tokens == nil {
		c.sendError(cmd.Ref, broker.CodeBadRequest, errors.New("refresh needs token authentication, which this server does not use"))
		return
	}
	claims, err := c.srv.cfg.Tokens.Verify(c.ctx, cmd.Token)
	if err != nil {
		c.srv.refused.Add(RefusedRefresh)
		c.sendError(cmd.Ref, broker.CodeUnauthorized, codedError{broker.ErrUnauthorized, strings.TrimPrefix(err.Error(), "auth: ")})
		return
	}
	if claims.Subject != c.subject {
		c.srv.refused.Add(RefusedRefresh)
		c.sendError(cmd.Ref, broker.CodeForbidden, codedError{broker.ErrForbidden, "the token is for another subject than the session's"})
		return
	}
	c.perms = claims.Permissions
	for _, p := range c.sess.SetPermissions(claims.Permissions) {
		c.sess.Send(jsonFrame(unsubscribedFrame{Type: "unsubscribed", Topic: p}))
	}
	c.armExpiry(claims.Expires)
	c.sess.Send(jsonFrame(refreshedFrame{Type: "refreshed", Ref: cmd.Ref, Expires: claims.Expires.UTC().Format(time.RFC3339)}))
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
func (s *Server) ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" ||
		!strings.EqualFold(u.Host, r.Host) {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if host == "localhost" {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.IsLoopback() {
			return true
		}
		if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
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
