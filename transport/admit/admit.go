// Package admit is the door of a node's sessions, whatever their
// transport (WebSocket, Server-Sent Events, HTTP streaming): the Origin
// rule, the node's bound on sessions, the per-address rate and bound,
// the session token and the backend's connect hook, applied in that order
// to the request that opens a session. One Door serves every transport
// of a node, so that its bounds hold for the node, not per transport.
package admit

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/internal/defaults"
	telem "github.com/tidings-io/tidings/internal/telemetry"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/clientip"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Policy is what a door admits: the Origins, the node's bound on
// sessions and the per-address ones. Config embeds it, and so does the
// Config of a transport that makes a door of its own. The zero value of
// each field means its default.
type Policy struct {
	// AllowedOrigins lists the Origins allowed to open sessions; "*"
	// allows all. Entries are exact origins (scheme://host[:port]) or
	// patterns whose host opens with "*." (https://*.example.com: any
	// subdomain, at any depth, not example.com itself). Default (empty):
	// only the node's own pages, an Origin whose host:port is the
	// request's Host and whose host is one of the node's names: a
	// loopback name or address (localhost, 127.0.0.0/8, ::1), the
	// address the connection came in on, or one of PublicHosts. The Host
	// header alone is not enough: a DNS-rebinding page controls it.
	// Requests with no Origin header are not checked.
	AllowedOrigins []string
	// PublicHosts are the names (host names or addresses, without port)
	// under which browsers reach the node, such as its DNS name or the
	// name a reverse proxy serves it under; with no AllowedOrigins, pages
	// on these hosts may open sessions. Case does not matter. Default:
	// none (only loopback names and the address the connection came in
	// on).
	PublicHosts []string
	// TrustedProxies are the peers whose X-Forwarded-For or Forwarded
	// names the client, for the address limits. Only a direct loopback
	// peer is loopback for the loopback rules. Empty: none (cmd/broker
	// defaults its flag to the private ranges).
	TrustedProxies []netip.Prefix
	// MaxSessions bounds the sessions the door admits at once; beyond it
	// a request gets 503 with Retry-After. Default 100000; negative: no
	// limit.
	MaxSessions int
	// IPConnRate is the sustained rate of new sessions per second from
	// one client address (IPv6: one /64); beyond it a request gets 429
	// with Retry-After. Default 100; negative: no limit.
	IPConnRate float64
	// IPConnBurst is how many new sessions one address may open at once
	// above IPConnRate. Default 1000.
	IPConnBurst int
	// IPMaxConns bounds the sessions one client address holds at once;
	// beyond it a request gets 429. Default 1000; negative: no limit.
	IPMaxConns int
}

// Config tunes a Door. The zero value of each field means its default.
type Config struct {
	Policy
	// Tokens verifies the token of each request (the `token` query
	// parameter or `Authorization: Bearer`); a missing or refused token
	// gets 401. Default (nil): sessions are anonymous.
	Tokens session.TokenVerifier
	// Hooks asks the application's backend about each session before it
	// opens (the connect hook); nil: no hook.
	Hooks *hooks.Hooks
	// Transport names the transport of the door New returns, in its
	// metric (tidings_refused_total{transport}); For returns the door of
	// another. Default "websocket".
	Transport string
	// MeterProvider receives tidings_refused_total for the door's
	// reasons. Default nil: none.
	MeterProvider metric.MeterProvider
	// Logger receives the door's warnings. Default: discard.
	Logger *slog.Logger
}

// The defaults of Policy.
const (
	DefaultMaxSessions = 100000
	DefaultIPConnRate  = 100
	DefaultIPConnBurst = 1000
	DefaultIPMaxConns  = 1000
)

func (c Config) withDefaults() Config {
	c.Policy = defaults.Fill(c.Policy, Policy{IPConnBurst: DefaultIPConnBurst})
	c.Policy = defaults.FillZero(c.Policy, Policy{
		MaxSessions: DefaultMaxSessions,
		IPConnRate:  DefaultIPConnRate,
		IPMaxConns:  DefaultIPMaxConns,
	})
	return defaults.Fill(c, Config{Transport: "websocket", Logger: defaults.Discard()})
}

// Reasons lists the door's refusal reasons.
var Reasons = []limit.Reason{limit.ReasonOrigin, limit.ReasonToken, limit.ReasonTokenRevoked, limit.ReasonMaxSessions, limit.ReasonIPRate, limit.ReasonIPConns}

// maxSessionsRetry is the Retry-After of a 503 for a full node.
const maxSessionsRetry = 5 * time.Second

// crowdSessions is how many sessions one client address, a TCP peer that
// no trusted proxy covers, may hold before the door wonders, in a warning
// logged once, whether a proxy stands in front of the node unnamed. A
// forwarded client, or a trusted peer that names no client, is not the
// sign of it.
const crowdSessions = 100

// crowdWarning is that warning.
const crowdWarning = "many sessions from one address; is a proxy in front without -trusted-proxies?"

// Door admits the sessions of one transport of a node, within bounds it
// may share with the doors of the node's other transports (For).
type Door struct {
	cfg Config
	*bounds
	// refused counts this transport's refusals, at the door and in its
	// sessions (Tally).
	refused *limit.Tally
}

// bounds are what the doors of a node's transports share.
type bounds struct {
	resolver *clientip.Resolver
	perIP    *limit.PerAddr
	// admitted counts the sessions admitted and not yet released, for
	// MaxSessions.
	admitted atomic.Int64
}

// New returns the door of cfg.Transport. It registers its metric with
// cfg.MeterProvider.
func New(cfg Config) *Door {
	cfg = cfg.withDefaults()
	return newDoor(cfg, &bounds{
		resolver: clientip.New(cfg.TrustedProxies),
		perIP:    limit.New(limit.Config{Rate: cfg.IPConnRate, Burst: cfg.IPConnBurst, Max: cfg.IPMaxConns}),
	})
}

// For returns the door of another transport of the node: the same rules,
// the same bounds (the node's sessions and each address's, counted over
// both doors), its own refusal counts.
func (d *Door) For(transport string) *Door {
	cfg := d.cfg
	cfg.Transport = transport
	return newDoor(cfg, d.bounds)
}

func newDoor(cfg Config, b *bounds) *Door {
	reasons := append([]limit.Reason{}, Reasons...)
	for _, r := range session.RefusalReasons {
		if !slices.Contains(reasons, r) { // limit.ReasonTokenRevoked: at the door and on refresh
			reasons = append(reasons, r)
		}
	}
	d := &Door{cfg: cfg, bounds: b, refused: limit.NewTally(reasons...)}
	if cfg.MeterProvider != nil {
		m := cfg.MeterProvider.Meter(telem.Scope("transport/admit"))
		if err := d.refused.RegisterMetric(m, attribute.String("transport", cfg.Transport)); err != nil {
			cfg.Logger.Error("metrics: tidings.refused", "err", err)
		}
	}
	return d
}

// Refused returns the transport's refusals so far, by reason, every
// reason present: the door's and its sessions'.
func (d *Door) Refused() map[limit.Reason]uint64 { return d.refused.Snapshot() }

// Tally returns the transport's refusal counts, which its sessions add to
// (session.Config.Refused): one tally, reported once, per transport.
func (d *Door) Tally() *limit.Tally { return d.refused }

// Admitted returns the number of sessions admitted and not yet released,
// over every door that shares this one's bounds.
func (d *Door) Admitted() int64 { return d.admitted.Load() }

// Resolver returns the door's client address resolver.
func (d *Door) Resolver() *clientip.Resolver { return d.resolver }

// Pass is an admitted request: who opens the session.
type Pass struct {
	// Client is the client's address, as the trusted proxies name it.
	Client clientip.Client
	// Claims are what the token (and the connect hook) grant; nil
	// without a token verifier or hook.
	Claims *auth.Claims
	// headers and cookies are what the hooks forward of the request.
	headers map[string]string
	cookies map[string]string
	release func()
	done    atomic.Bool
}

// Info completes info, a session's (ID, Remote, Link and Log set by its
// transport), with the pass's identity: the claims' subject,
// permissions, user info and token id, or, without claims, an anonymous
// session's permissions (publishing only from a loopback peer); and the
// request's headers and cookies the hooks forward.
func (p *Pass) Info(info session.Info) session.Info {
	if p.Claims != nil {
		c := p.Claims
		info.Subject, info.Permissions, info.UserInfo, info.TokenID = c.Subject, c.Permissions, c.Info, c.TokenID
		info.Claims = c
	} else {
		info.Permissions = auth.Anonymous(p.Client.Local())
	}
	info.Headers, info.Cookies = p.headers, p.cookies
	return info
}

// User returns the claims' subject, "" for an anonymous session.
func (p *Pass) User() string {
	if p.Claims == nil {
		return ""
	}
	return p.Claims.Subject
}

// Release gives the pass's place back to the door; call it once the
// session has ended. Later calls do nothing.
func (p *Pass) Release() {
	if p.done.CompareAndSwap(false, true) {
		p.release()
	}
}

// Admit applies the door to r, a request that opens a session: the Origin
// rule, MaxSessions, the address's rate and bound, the token and the
// connect hook. On refusal it has answered r with its JSON error (and
// Retry-After where waiting helps) and returns nil; on success the caller
// releases the pass when the session ends.
func (d *Door) Admit(w http.ResponseWriter, r *http.Request) *Pass {
	if !d.originAllowed(r) {
		d.refuse(w, limit.ReasonOrigin, http.StatusForbidden, protocol.CodeForbidden, "origin not allowed", 0)
		return nil
	}
	client := d.resolver.Resolve(r)
	if max := d.cfg.MaxSessions; max > 0 {
		if d.admitted.Add(1) > int64(max) {
			d.admitted.Add(-1)
			d.refuse(w, limit.ReasonMaxSessions, http.StatusServiceUnavailable, protocol.CodeUnavailable,
				"the server holds as many sessions as it may; try again later", maxSessionsRetry)
			return nil
		}
	} else {
		d.admitted.Add(1)
	}
	releaseIP, active, err := d.perIP.AcquireActive(client.Addr)
	if err != nil {
		d.admitted.Add(-1)
		var retry time.Duration
		if ref := (*limit.Refusal)(nil); errors.As(err, &ref) {
			retry = ref.RetryAfter
		}
		reason := limit.ReasonIPRate
		if errors.Is(err, limit.ErrConcurrent) {
			reason = limit.ReasonIPConns
		}
		d.refuse(w, reason, http.StatusTooManyRequests, protocol.CodeRateLimited, broker.ClientError(err).Message, retry)
		return nil
	}
	if active > crowdSessions && !client.Forwarded && !d.resolver.Trusted(client.Peer) && d.perIP.FirstCrowd(active, crowdSessions) {
		// Behind a reverse proxy that is not trusted every client has
		// the proxy's address, and the address limits throttle them all
		// as one. Logged once for the door's life (limit.FirstCrowd).
		d.cfg.Logger.Warn(crowdWarning, "addr", client.Addr.String(), "sessions", active, "threshold", crowdSessions)
	}
	p := &Pass{Client: client, release: func() {
		releaseIP()
		d.admitted.Add(-1)
	}}
	if d.cfg.Tokens != nil {
		p.Claims, err = d.cfg.Tokens.Verify(r.Context(), TokenOf(r))
		if err != nil {
			p.Release()
			reason := limit.ReasonToken
			if errors.Is(err, auth.ErrTokenRevoked) {
				reason = limit.ReasonTokenRevoked
			}
			d.refuse(w, reason, http.StatusUnauthorized, protocol.CodeUnauthorized, broker.ClientError(err).Message, 0)
			return nil
		}
	}
	if d.cfg.Hooks != nil {
		p.headers, p.cookies = d.cfg.Hooks.Forwarded(r)
	}
	if d.cfg.Hooks.Enabled(hooks.Connect) {
		claims, ok := d.connectHook(w, r, p)
		if !ok {
			p.Release()
			return nil
		}
		p.Claims = claims
	}
	return p
}

// TokenOf returns the session token of r: the `token` query parameter
// (browsers cannot set headers on a WebSocket or an EventSource), else an
// `Authorization: Bearer` header.
func TokenOf(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok)
	}
	return ""
}

// refuse answers a refused request with its JSON error and counts it.
func (d *Door) refuse(w http.ResponseWriter, reason limit.Reason, status int, code, message string, retryAfter time.Duration) {
	d.refused.Add(reason)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tidings", error="invalid_token"`)
	}
	HTTPError(w, status, code, message)
}

// HTTPError writes the JSON error body of the HTTP API:
// {"error": {"code": …, "message": …}}.
func HTTPError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}
