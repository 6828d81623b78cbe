// Package sse is Tidings' Server-Sent Events transport: GET /v1/sse, a
// receive-only stream of the frames a WebSocket session gets, each as an
// event named by its type (welcome, subscribed, message, reset, join,
// leave, error, close) whose data is the WebSocket frame's JSON.
//
// The request names its topics, exact or wildcard, with repeated `topic`
// query parameters, and its session token, when the server verifies
// tokens, with `token` (or `Authorization: Bearer`). Every event of an
// exact topic's stream (message, subscribed, reset) carries an `id:`, an
// opaque cursor of the positions of all the stream's exact topics; a
// browser's EventSource sends the last one back as Last-Event-ID when it
// reconnects, and each exact topic it names that the request asks for
// again resumes after its position (the `subscribed` says `recovered`),
// with no gap and no duplicate while history holds the messages. A
// Last-Event-ID that is not such a cursor is ignored: the stream starts
// afresh, as `recovered: false` tells.
//
// A comment line (`: ping`) every Heartbeat keeps proxies from closing an
// idle stream. A stream ends with a `close` event carrying the code and
// reason a WebSocket close frame would: 1001 on Shutdown, 1008 for a slow
// consumer or an expired or revoked token, 4000–4999 when the server API
// disconnects the session.
package sse

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/internal/gate"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/session"
)

// TokenVerifier checks session tokens; *auth.Verifier implements it.
type TokenVerifier = session.TokenVerifier

// Config tunes a Server. The zero value of each field means its default.
type Config struct {
	// NodeID is reported in every welcome event. Default "tidings".
	NodeID string
	// Tokens verifies the token of each request (the `token` query
	// parameter or `Authorization: Bearer`); a missing or refused token
	// gets 401. Default (nil): streams are anonymous and may subscribe to
	// anything.
	Tokens TokenVerifier
	// Heartbeat is the interval between `: ping` comment lines. Default
	// 25s.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a client that reads nothing.
	// Default 10s.
	WriteTimeout time.Duration
	// MaxSessions bounds the streams of the server; beyond it a request
	// gets 503 with Retry-After. Default 100000; negative: no limit.
	MaxSessions int
	// MaxTopics bounds the topics of one request; more get 400. Default
	// 32.
	MaxTopics int
	// Registry, when set, is told of every session (the node's control
	// plane: disconnect, revoke, server-side subscriptions).
	Registry session.Registry
	// Presence answers presence; nil: off. (A stream sends no commands:
	// it is there for the control plane's sessions.)
	Presence session.PresenceReader
	// Logger receives the server's events. Default: discard.
	Logger *slog.Logger
}

// The defaults of Config.
const (
	DefaultNodeID       = "tidings"
	DefaultHeartbeat    = 25 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultMaxSessions  = 100000
	DefaultMaxTopics    = 32
)

func (c Config) withDefaults() Config {
	defaults.Zero(&c.NodeID, DefaultNodeID)
	defaults.Positive(&c.Heartbeat, DefaultHeartbeat)
	defaults.Positive(&c.WriteTimeout, DefaultWriteTimeout)
	defaults.Zero(&c.MaxSessions, DefaultMaxSessions)
	defaults.Positive(&c.MaxTopics, DefaultMaxTopics)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Refusal reasons, as counted in Refused.
const (
	// RefusedToken: a request refused with 401, token missing or not valid.
	RefusedToken = limit.ReasonToken
	// RefusedTokenRevoked: a request refused with 401, the token was revoked.
	RefusedTokenRevoked = limit.ReasonTokenRevoked
	// RefusedMaxSessions: a request refused with 503, the server is full.
	RefusedMaxSessions = limit.ReasonMaxSessions
)

// maxSessionsRetry is the Retry-After of a 503 for a full server.
const maxSessionsRetry = 5 * time.Second

// Server serves Server-Sent Events streams against a broker. The broker's
// Encoder must be this package's Encoder (see Encoder).
type Server struct {
	cfg Config
	b   *broker.Broker
	log *slog.Logger

	// sessions admits streams until Shutdown and counts those not yet
	// ended; publishes is the sessions' (which never publish).
	sessions  gate.Gate
	publishes gate.Gate
	admitted  atomic.Int64
	refused   *limit.Tally

	mu    sync.Mutex
	conns map[*conn]struct{}

	sessionCfg session.Config
}

// New returns a server for b.
func New(cfg Config, b *broker.Broker) *Server {
	cfg = cfg.withDefaults()
	reasons := append([]limit.Reason{RefusedToken, RefusedMaxSessions}, session.RefusalReasons...)
	s := &Server{
		cfg:     cfg,
		b:       b,
		log:     cfg.Logger.With("transport", "sse", "node", cfg.NodeID),
		refused: limit.NewTally(reasons...),
		conns:   make(map[*conn]struct{}),
	}
	s.sessionCfg = session.Config{
		Broker:    b,
		Tokens:    cfg.Tokens,
		Publishes: &s.publishes,
		Refused:   s.refused,
		Protocol:  "sse",
		API:       broker.APIOther,
		Registry:  cfg.Registry,
		Presence:  cfg.Presence,
	}
	return s
}

// Refused returns the refusals so far, by reason.
func (s *Server) Refused() map[limit.Reason]uint64 { return s.refused.Snapshot() }

// ServeHTTP runs one stream until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET to open an event stream")
		return
	}
	topics, err := s.topicsOf(r)
	if err != nil {
		e := broker.ClientError(err)
		httpError(w, http.StatusBadRequest, e.Code, e.Message)
		return
	}
	if !s.sessions.Enter() {
		httpError(w, http.StatusServiceUnavailable, broker.CodeUnavailable, "server shutting down")
		return
	}
	defer s.sessions.Leave()
	claims, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer s.admitted.Add(-1)

	c := s.newConn(w, r, claims)
	if !s.register(c) {
		c.end()
		httpError(w, http.StatusServiceUnavailable, broker.CodeUnavailable, "server shutting down")
		return
	}
	defer s.unregister(c)
	c.serve(topics, claims)
}

// topicsOf returns the request's topics, each once, in order.
func (s *Server) topicsOf(r *http.Request) ([]string, error) {
	q := r.URL.Query()["topic"]
	if len(q) == 0 {
		return nil, broker.NewError(broker.ErrBadRequest, "name at least one topic with the topic query parameter")
	}
	if len(q) > s.cfg.MaxTopics {
		return nil, broker.NewError(broker.ErrBadRequest, "too many topics: a stream may name %d", s.cfg.MaxTopics)
	}
	seen := make(map[string]bool, len(q))
	topics := make([]string, 0, len(q))
	for _, t := range q {
		if _, err := broker.ValidatePattern(t); err != nil {
			return nil, err
		}
		if !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	return topics, nil
}

// admit applies MaxSessions and the token check. On refusal it has
// answered the request; on success the caller gives back the admission
// (s.admitted) when the stream ends.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (*auth.Claims, bool) {
	if n := s.admitted.Add(1); s.cfg.MaxSessions > 0 && n > int64(s.cfg.MaxSessions) {
		s.admitted.Add(-1)
		s.refuse(w, RefusedMaxSessions, http.StatusServiceUnavailable, broker.CodeUnavailable,
			"the server holds as many sessions as it may; try again later", maxSessionsRetry)
		return nil, false
	}
	if s.cfg.Tokens == nil {
		return nil, true
	}
	claims, err := s.cfg.Tokens.Verify(r.Context(), tokenOf(r))
	if err != nil {
		s.admitted.Add(-1)
		reason := RefusedToken
		if errorsIsRevoked(err) {
			reason = RefusedTokenRevoked
		}
		s.refuse(w, reason, http.StatusUnauthorized, broker.CodeUnauthorized, broker.ClientError(err).Message, 0)
		return nil, false
	}
	return claims, true
}

// refuse answers a refused request with its JSON error and counts it.
func (s *Server) refuse(w http.ResponseWriter, reason limit.Reason, status int, code, message string, retryAfter time.Duration) {
	s.refused.Add(reason)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tidings", error="invalid_token"`)
	}
	httpError(w, status, code, message)
}

// register adds c to the server's streams; false once Shutdown began.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions.Closed() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// appendConns appends the registered streams to dst.
func (s *Server) appendConns(dst []*conn) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		dst = append(dst, c)
	}
	return dst
}

// Shutdown refuses new streams, then ends every stream with a `close`
// event, code 1001 `server shutting down`, after the events already
// queued, and waits for them to end. At ctx's deadline the streams still
// writing are cut; it returns ctx.Err() then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.sessions.Close()
	s.publishes.Close()
	s.mu.Unlock()
	conns := s.appendConns(nil)
	for _, c := range conns {
		c.Close(session.CauseShutdown)
	}
	if s.sessions.Wait(ctx) == nil {
		return nil
	}
	for _, c := range s.appendConns(conns[:0]) {
		c.cut()
	}
	_ = s.sessions.Wait(context.Background())
	return ctx.Err()
}

// httpError writes the JSON error body of the HTTP API.
func httpError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func newSessionID() string { return uuid.NewString() }
