// Package httpapi is Tidings' HTTP surface: the publish API for backends
// (POST /v1/publish and /v1/publish/batch), the WebSocket route, and the
// operations endpoints /healthz, /readyz and /metrics.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/internal/gate"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/transport/clientip"
	"github.com/tidings-io/tidings/transport/ws"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Config: what a zero field means.
const (
	// DefaultPublishRate is Config.PublishRate's default, in publish
	// requests per second per API key.
	DefaultPublishRate = 1000
	// DefaultMaxBodySize is Config.MaxBodySize's default: 1 MiB.
	DefaultMaxBodySize = 1 << 20
	// DefaultMaxBatch is Config.MaxBatch's default, in messages.
	DefaultMaxBatch = 1000
)

// Config tunes an API. A zero field means its default: the Default*
// constant its comment names, or what it says for an empty or nil value.
// A bound that can be turned off says so; a negative value turns it off.
type Config struct {
	// APIKeys are the publisher keys accepted as `Authorization: Bearer`,
	// each limited to its topic patterns (403 outside them) and to its
	// rate. Empty (the default): publishing is accepted from loopback
	// only: a loopback TCP peer whose request names no other client (no
	// X-Forwarded-For, Forwarded or X-Real-IP).
	APIKeys []auth.APIKey
	// PublishRate is the publish requests per second of each API key that
	// sets no rate of its own; beyond it 429 with Retry-After. A key may
	// send one second's worth at once. Zero means DefaultPublishRate
	// (1000); negative: no limit.
	PublishRate float64
	// TrustedProxies are the peers whose X-Forwarded-For or Forwarded
	// names the client (see package clientip), for the throttle of wrong
	// API keys per address and the logs. The loopback rule needs the TCP
	// peer itself on loopback and no proxy header, trusted or not. Empty
	// (the default): none.
	TrustedProxies []netip.Prefix
	// MaxBodySize is the largest publish body in bytes, inclusive. Zero or
	// negative means DefaultMaxBodySize (1 MiB).
	MaxBodySize int64
	// MaxBatch is the most messages one batch may carry. Zero or negative
	// means DefaultMaxBatch (1000).
	MaxBatch int
	// Ready reports whether the store can be reached; /readyz answers 503
	// with its error as the reason. Nil (the default): always ready.
	Ready func() error
	// Metrics serves GET /metrics (tracing.Telemetry.MetricsHandler).
	// Nil (the default): /metrics answers 404, metrics are off.
	Metrics http.Handler
	// TracerProvider traces HTTP publishes. Nil (the default): off.
	TracerProvider trace.TracerProvider
	// MeterProvider receives the HTTP request metrics. Nil (the default):
	// none.
	MeterProvider metric.MeterProvider
	// Propagator reads the trace context of publish requests (traceparent,
	// tracestate, baggage). Nil means W3C trace context and baggage.
	Propagator propagation.TextMapPropagator
	// Logger receives failed publishes with their cause, which clients
	// are not told. Nil means discard.
	Logger *slog.Logger
	// Control runs the server API's calls (disconnect, presence, …). Nil:
	// those calls answer 503 (GET /v1/history needs only the broker).
	Control *node.Node
	// Tokens, when set, verifies the JWTs the server API accepts in
	// place of an admin API key: those with the admin scope (AdminScope).
	// Nil (the default): API keys only.
	Tokens TokenVerifier
	// Settings returns the node's effective configuration, secrets
	// masked, for GET /v1/info's config member. Nil: no config member.
	Settings func() any
	// SSE, when set, serves the Server-Sent Events streams at /v1/sse.
	SSE http.Handler
	// Stream, when set, serves the HTTP-streaming sessions at /v1/stream
	// (the stream) and /v1/stream/ (its commands).
	Stream http.Handler
}

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	MaxBodySize: DefaultMaxBodySize,
	MaxBatch:    DefaultMaxBatch,
	Logger:      defaults.Discard(),
}

// withDefaults returns c with its zero fields, and the negative ones that
// cannot be turned off, set to their defaults.
func (c Config) withDefaults() Config {
	defaults.Zero(&c.PublishRate, DefaultPublishRate) // negative: no limit
	return defaults.Fill(c, configDefaults)
}

// API serves the HTTP routes of one node.
type API struct {
	cfg Config
	b   *broker.Broker
	ws  *ws.Server
	mux *http.ServeMux
	// publishes admits publishes until BeginShutdown and counts those
	// not yet finished.
	publishes gate.Gate

	keys     atomic.Pointer[[]*apiKey] // SetLimits replaces them
	keysMu   sync.Mutex                // orders SetLimits
	keyFails *limit.Failures           // failed API keys by client address
	resolver *clientip.Resolver
	refused  *limit.Tally // by reason (limit.ReasonHTTP*)
	tel      telemetry
	// maxBody is Config.MaxBodySize, which SetLimits changes.
	maxBody atomic.Int64
}

// New returns the API of a node whose WebSocket sessions wsrv serves.
func New(cfg Config, b *broker.Broker, wsrv *ws.Server) *API {
	a := &API{cfg: cfg.withDefaults(), b: b, ws: wsrv, mux: http.NewServeMux(), refused: limit.NewTally(refusalReasons...)}
	keys := newKeys(a.cfg.APIKeys, a.cfg.PublishRate)
	a.keys.Store(&keys)
	a.maxBody.Store(a.cfg.MaxBodySize)
	a.keyFails = newKeyFailures()
	a.resolver = clientip.New(a.cfg.TrustedProxies)
	a.setupTelemetry()
	a.mux.Handle("/v1/ws", wsrv)
	if a.cfg.SSE != nil {
		a.mux.Handle("/v1/sse", a.cfg.SSE)
	}
	if a.cfg.Stream != nil {
		a.mux.Handle("/v1/stream", a.cfg.Stream)
		a.mux.Handle("/v1/stream/", a.cfg.Stream)
	}
	a.mux.HandleFunc("/v1/publish", a.publish)
	a.mux.HandleFunc("/v1/publish/batch", a.publishBatch)
	a.routeControl()
	a.mux.HandleFunc("/healthz", a.healthz)
	a.mux.HandleFunc("/readyz", a.readyz)
	a.mux.HandleFunc("/metrics", a.metrics)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "no such route")
	})
	return a
}

// ServeHTTP routes the request and counts it by route and status.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.serve(w, r) }

// BeginShutdown makes /readyz fail and new publishes get 503 from now on.
func (a *API) BeginShutdown() { a.publishes.Close() }

// Drain waits until every publish admitted before BeginShutdown has
// finished, its messages handed to the broker, or until ctx is done. Call
// it after BeginShutdown; it does not wait for other HTTP requests, nor
// for connections that have not sent a request.
func (a *API) Drain(ctx context.Context) error { return a.publishes.Wait(ctx) }

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.publishes.Closed() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "shutting down"})
		return
	}
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// publishBody is the body of POST /v1/publish and one entry of a batch.
type publishBody struct {
	Topic          string          `json:"topic"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// publishResult answers one published message. A batch stored in part
// answers the messages that were not stored with Error instead.
type publishResult struct {
	ID     string     `json:"id,omitempty"`
	Topic  string     `json:"topic"`
	Offset uint64     `json:"offset,omitempty"`
	Epoch  string     `json:"epoch,omitempty"`
	Error  *errorBody `json:"error,omitempty"`
}

// errorBody is the error object of error answers.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var p publishBody
	a.accept(w, r, &p, func(r *http.Request, key *apiKey) {
		if header := r.Header.Get("Idempotency-Key"); header != "" {
			if p.IdempotencyKey != "" && p.IdempotencyKey != header {
				writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "the Idempotency-Key header and idempotency_key differ")
				return
			}
			p.IdempotencyKey = header
		}
		msgs, ok := a.run(w, r, key, []publishBody{p})
		a.auditPublish(r, key, p.Topic, ok)
		if ok {
			writeJSON(w, http.StatusOK, msgs[0])
		}
	})
}

func (a *API) publishBatch(w http.ResponseWriter, r *http.Request) {
	var batch struct {
		Messages []publishBody `json:"messages"`
	}
	a.accept(w, r, &batch, func(r *http.Request, key *apiKey) {
		if len(batch.Messages) > a.cfg.MaxBatch {
			writeError(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, fmt.Sprintf("a batch holds at most %d messages", a.cfg.MaxBatch))
			return
		}
		results, ok := a.run(w, r, key, batch.Messages)
		if ok {
			writeJSON(w, http.StatusOK, map[string]any{"results": results})
		}
	})
}

// accept does what both publish routes do first: it starts the publish
// span, admits the request (its key, rate and body) and decodes the body
// into v, answering the request itself when any of that fails; then it
// runs publish with the request (carrying the span) and its key, while
// the shutdown gate counts the request.
func (a *API) accept(w http.ResponseWriter, r *http.Request, v any, publish func(*http.Request, *apiKey)) {
	r, end := a.startPublish(w, r)
	defer end()
	body, key, ok := a.admit(w, r)
	if !ok {
		return
	}
	defer a.publishes.Leave()
	if err := decodeStrict(body, v); err != nil {
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, err.Error())
		return
	}
	publish(r, key)
}

// run publishes ps as one batch, within key's scope (nil: any topic), and
// maps failures to HTTP errors.
func (a *API) run(w http.ResponseWriter, r *http.Request, key *apiKey, ps []publishBody) ([]publishResult, bool) {
	pubs := make([]broker.Publication, len(ps))
	for i, p := range ps {
		pubs[i] = broker.Publication{Topic: p.Topic, Data: p.Data, IdempotencyKey: p.IdempotencyKey}
	}
	if key != nil {
		if err := broker.CheckPublish(key.APIKey, pubs); err != nil {
			if errors.Is(err, broker.ErrForbidden) {
				a.refused.Add(limit.ReasonHTTPScope)
			}
			writeClientError(w, err)
			return nil, false
		}
	}
	msgs, err := a.b.Publish(r.Context(), pubs)
	if err != nil {
		ce := broker.ClientError(err)
		if ce.Code == protocol.CodeUnavailable || ce.Code == protocol.CodeInternal {
			a.cfg.Logger.Warn("publish failed", "topics", len(pubs), "err", err)
		}
		if errors.Is(err, broker.ErrPartialBatch) {
			// Tell the publisher what was stored; a retry with the same
			// idempotency keys stores the rest and answers the same.
			writeJSON(w, protocol.HTTPStatus(ce.Code), map[string]any{
				"error":   errorBody{Code: ce.Code, Message: ce.Message},
				"results": results(msgs),
			})
			return nil, false
		}
		writeClientError(w, err)
		return nil, false
	}
	describePublish(r.Context(), msgs)
	return results(msgs), true
}

// results answers each message: its position, or, for a message a
// partial batch did not store, an error.
func results(msgs []*broker.Message) []publishResult {
	out := make([]publishResult, len(msgs))
	for i, m := range msgs {
		if m.Offset == 0 {
			out[i] = publishResult{Topic: m.Topic, Error: &errorBody{Code: protocol.CodeUnavailable, Message: "not stored"}}
			continue
		}
		out[i] = publishResult{ID: m.ID, Topic: m.Topic, Offset: m.Offset, Epoch: m.Epoch}
	}
	return out
}

// admit applies method, auth, rate, content type, shutdown and size
// checks and returns the body and the caller's API key (nil for a
// loopback publisher when no key is configured). When it returns true
// the publish is admitted by a.publishes, and the caller must call
// a.publishes.Leave when it has finished.
func (a *API) admit(w http.ResponseWriter, r *http.Request) ([]byte, *apiKey, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return nil, nil, false
	}
	key, ok := a.authenticate(w, r)
	if !ok {
		return nil, nil, false
	}
	if retry, ok := key.allow(); !ok {
		a.refused.Add(limit.ReasonHTTPRate)
		w.Header().Set("Retry-After", retry)
		writeError(w, http.StatusTooManyRequests, protocol.CodeRateLimited, fmt.Sprintf("API key %s publishes faster than its limit allows", key.Name))
		return nil, nil, false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return nil, nil, false
	}
	if !a.publishes.Enter() {
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "server shutting down")
		return nil, nil, false
	}
	maxBody := a.maxBody.Load()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		a.publishes.Leave()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, fmt.Sprintf("body is larger than %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "body could not be read")
		}
		return nil, nil, false
	}
	if !utf8.Valid(body) {
		a.publishes.Leave()
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "body is not valid UTF-8")
		return nil, nil, false
	}
	return body, key, true
}

// authorize returns the caller's key (nil when no key is configured and
// client, r's client, is local: its TCP peer is loopback and no proxy
// header names another client; an address a proxy names, 127.0.0.1
// included, never is) and 0, or the HTTP status and message refusing r.
// authenticate finds the API key of r (nil when none is configured and
// the client is on loopback), or answers r: an address blocked for wrong
// keys, a missing or wrong key, a client not on loopback.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (*apiKey, bool) {
	client := a.resolver.Resolve(r)
	if len(a.apiKeys()) > 0 {
		if wait, blocked := a.keyFails.Blocked(client.Addr); blocked {
			a.refused.Add(limit.ReasonHTTPKeyFailures)
			w.Header().Set("Retry-After", retrySeconds(wait))
			writeError(w, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many wrong API keys from this address; try again later")
			return nil, false
		}
	}
	key, code, msg := a.authorize(r, client)
	if code != 0 {
		if code == http.StatusUnauthorized {
			// RFC 9110 §11.6.1: a 401 names the scheme it expects.
			w.Header().Set("WWW-Authenticate", `Bearer realm="tidings"`)
			a.refused.Add(limit.ReasonHTTPKey)
		} else {
			a.refused.Add(limit.ReasonHTTPLoopback)
		}
		writeError(w, code, statusCode(code), msg)
		return nil, false
	}
	return key, true
}

func (a *API) authorize(r *http.Request, client clientip.Client) (*apiKey, int, string) {
	keys := a.apiKeys()
	if len(keys) == 0 {
		if client.Local() {
			return nil, 0, ""
		}
		return nil, http.StatusForbidden, "with no API key configured, publishing is accepted from loopback only"
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return nil, http.StatusUnauthorized, "an API key is required: Authorization: Bearer <key>"
	}
	key := lookupKey(keys, secret)
	if key == nil {
		a.keyFails.Fail(client.Addr) // a guess: counted against the address
		return nil, http.StatusUnauthorized, "API key is not valid"
	}
	return key, 0, ""
}
