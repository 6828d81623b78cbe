package limit

import (
	"sync/atomic"

	"github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Reason is why a client, a session, a command or a publish was refused:
// one value per security rule or limit. Its String is its label in
// tidings_refused_total{reason}. Each transport counts the reasons it
// enforces in a Tally of its own.
type Reason uint8

// The refusal reasons, by the package that counts them.
const (
	// ReasonNone is no reason; a Tally ignores it.
	ReasonNone Reason = iota

	// ReasonOrigin: a WebSocket upgrade refused with 403, Origin not allowed.
	ReasonOrigin
	// ReasonToken: a WebSocket upgrade refused with 401, token missing or
	// not valid.
	ReasonToken
	// ReasonMaxSessions: a WebSocket upgrade refused with 503, the server
	// is full.
	ReasonMaxSessions
	// ReasonIPRate: a WebSocket upgrade refused with 429, the address opens
	// sessions too fast.
	ReasonIPRate
	// ReasonIPConns: a WebSocket upgrade refused with 429, the address
	// holds too many sessions.
	ReasonIPConns

	// ReasonOpRate: a command or ping over the session's rate.
	ReasonOpRate
	// ReasonOpAbuse: a session closed for exceeding its rate repeatedly.
	ReasonOpAbuse
	// ReasonForbidden: a subscribe or publish its permissions do not cover.
	ReasonForbidden
	// ReasonSubscriptions: a subscribe over the per-session limit.
	ReasonSubscriptions
	// ReasonTokenExpired: a session closed because its token expired.
	ReasonTokenExpired
	// ReasonRefresh: a `refresh` whose token was refused.
	ReasonRefresh
	// ReasonTokenRevoked: a revoked token, refused at the upgrade (401) or
	// a refresh, or a live session closed for it (1008).
	ReasonTokenRevoked

	// ReasonHTTPKey: an HTTP publish refused with 401, no API key or an
	// unknown one.
	ReasonHTTPKey
	// ReasonHTTPLoopback: an HTTP publish refused with 403, no API key
	// configured and the client is not on loopback.
	ReasonHTTPLoopback
	// ReasonHTTPScope: an HTTP publish refused with 403, a topic outside
	// the key's patterns.
	ReasonHTTPScope
	// ReasonHTTPRate: an HTTP publish refused with 429, the key publishes
	// faster than its rate.
	ReasonHTTPRate
	// ReasonHTTPKeyFailures: an HTTP publish refused with 429, the address
	// sent too many wrong API keys.
	ReasonHTTPKeyFailures

	reasonCount
)

// reasonLabels is indexed by Reason.
var reasonLabels = [reasonCount]string{
	ReasonNone:            "none",
	ReasonOrigin:          "origin",
	ReasonToken:           "token",
	ReasonMaxSessions:     "max_sessions",
	ReasonIPRate:          "ip_rate",
	ReasonIPConns:         "ip_conns",
	ReasonOpRate:          "op_rate",
	ReasonOpAbuse:         "op_abuse",
	ReasonForbidden:       "forbidden",
	ReasonSubscriptions:   "subscriptions",
	ReasonTokenExpired:    "token_expired",
	ReasonRefresh:         "refresh",
	ReasonTokenRevoked:    "token_revoked",
	ReasonHTTPKey:         "http_unauthorized",
	ReasonHTTPLoopback:    "http_loopback",
	ReasonHTTPScope:       "http_forbidden",
	ReasonHTTPRate:        "http_rate",
	ReasonHTTPKeyFailures: "http_key_failures",
}

// String returns the reason's metric label.
func (r Reason) String() string {
	if r >= reasonCount {
		return reasonLabels[ReasonNone]
	}
	return reasonLabels[r]
}

// Tally counts refusals by reason, for a fixed set of reasons: an array
// indexed by Reason, so that counting is one atomic add.
type Tally struct {
	reasons []Reason
	counts  [reasonCount]atomic.Uint64
}

// NewTally returns a tally of reasons, each at 0.
func NewTally(reasons ...Reason) *Tally { return &Tally{reasons: reasons} }

// Add counts one refusal for r.
func (t *Tally) Add(r Reason) {
	if r > ReasonNone && r < reasonCount {
		t.counts[r].Add(1)
	}
}

// Reasons returns the reasons the tally reports.
func (t *Tally) Reasons() []Reason { return t.reasons }

// Count returns r's count.
func (t *Tally) Count(r Reason) uint64 {
	if r >= reasonCount {
		return 0
	}
	return t.counts[r].Load()
}

// Snapshot returns the count of every reason of the tally, zeros
// included.
func (t *Tally) Snapshot() map[Reason]uint64 {
	m := make(map[Reason]uint64, len(t.reasons))
	for _, r := range t.reasons {
		m[r] = t.counts[r].Load()
	}
	return m
}

// RegisterMetric reports the tally on m as tidings.refused{reason}
// (tidings_refused_total on /metrics): every reason of the tally, zeros
// included, each series with attrs too. Each transport registers its own
// tally, naming itself in attrs (transport="websocket", …): two tallies
// must not report the same series.
func (t *Tally) RegisterMetric(m metric.Meter, attrs ...attribute.KeyValue) error {
	in := telemetry.NewInstruments(m)
	observe := make([]metric.MeasurementOption, len(t.reasons))
	for i, r := range t.reasons {
		observe[i] = telemetry.Attrs(append([]attribute.KeyValue{attribute.String("reason", r.String())}, attrs...)...)
	}
	in.Observe(telemetry.Counter("tidings.refused", "{refusal}", "Upgrades, sessions, commands and publishes refused by a security rule or limit, by reason.",
		func(o telemetry.Observation) {
			for i, r := range t.reasons {
				o(int64(t.counts[r].Load()), observe[i])
			}
		}))
	return in.Err()
}
