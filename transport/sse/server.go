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
	"log/slog"
	"net/http"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/internal/gate"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpstream"
	"go.opentelemetry.io/otel/metric"
)

// TokenVerifier checks session tokens; *auth.Verifier implements it.
type TokenVerifier = session.TokenVerifier

// Config tunes a Server. The zero value of each field means its default.
type Config struct {
	// Settings are those of every streamed transport: NodeID, Heartbeat
	// (between `: ping` comment lines), WriteTimeout and Logger.
	httpstream.Settings
	// Services are what the sessions are given (session.Services). A
	// stream sends no commands: Tokens verifies, without Door, the
	// request's token, Presence is there for the control plane's
	// sessions, Rules bear on subscribing and Hooks on the subscribes
	// (the connect hook is the Door's; the server's own door asks none).
	session.Services
	// Door admits the requests: a node's transports share one, so that
	// its bounds hold for the node. Default (nil): a door of the
	// server's own with MaxSessions and Tokens, any Origin and no
	// per-address limits.
	Door *admit.Door
	// MaxSessions bounds the streams of the server's own door (without
	// Door), as admit.Policy.MaxSessions does.
	MaxSessions int
	// MaxTopics bounds the topics of one request; more get 400. Default
	// 32.
	MaxTopics int
	// MeterProvider receives the sessions metrics
	// (tidings_sessions_opened_total, tidings_sessions_closed_total) and
	// the sessions' refusals. Default nil: none.
	MeterProvider metric.MeterProvider
}

// DefaultMaxTopics is the default of Config.MaxTopics; the other
// defaults are httpstream's (Settings) and admit's (MaxSessions).
const DefaultMaxTopics = 32

func (c Config) withDefaults() Config {
	c.Settings = c.Settings.WithDefaults()
	return defaults.Fill(c, Config{MaxTopics: DefaultMaxTopics})
}

// Server serves Server-Sent Events streams against a broker, whose frames
// it encodes with this package's Encoder (an encoding of the broker's).
type Server struct {
	cfg Config
	b   *broker.Broker
	log *slog.Logger

	// sessions admits streams until Shutdown, counts those not yet
	// ended and holds those registered; publishes is the sessions'
	// (which never publish).
	sessions  httpstream.Sessions[*conn, *conn]
	publishes gate.Gate
	door      *admit.Door
	enc       broker.Encoding

	// streams is what the streams' plumbing shares.
	streams    httpstream.Options
	sessionCfg session.Config
}

// New returns a server for b.
func New(cfg Config, b *broker.Broker) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:  cfg,
		b:    b,
		log:  cfg.Logger.With("transport", "sse", "node", cfg.NodeID),
		door: cfg.Door,
		enc:  b.AddEncoder(Encoder{}),
	}
	if s.door == nil {
		s.door = admit.New(admit.Config{
			Policy: admit.Policy{MaxSessions: cfg.MaxSessions, IPConnRate: -1, IPMaxConns: -1, AllowedOrigins: []string{"*"}},
			Tokens: cfg.Tokens, Transport: "sse", MeterProvider: cfg.MeterProvider, Logger: cfg.Logger})
	}
	s.sessionCfg = session.Config{
		Services:  cfg.Services,
		Broker:    b,
		Publishes: &s.publishes,
		Refused:   s.door.Tally(),
		Protocol:  "sse",
		API:       broker.APIOther,
	}
	s.streams = httpstream.Options{
		Heartbeat:    cfg.Heartbeat,
		WriteTimeout: cfg.WriteTimeout,
		Ping:         []byte(": ping\n\n"),
		Telemetry: httpstream.NewTelemetry(cfg.MeterProvider, scope, "sse",
			"Server-Sent Events streams", s.log),
	}
	return s
}

// Refused returns the refusals so far, by reason: the door's and the
// sessions'.
func (s *Server) Refused() map[limit.Reason]uint64 { return s.door.Refused() }

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
	httpstream.Serve(&s.sessions, s.door, w, r, func(pass *admit.Pass) (*conn, *conn) {
		c := s.newConn(w, r, pass, topics)
		return c, c
	}, unavailable)
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

// Shutdown refuses new streams, then ends every stream with a `close`
// event, code 1001 `server shutting down`, after the events already
// queued, and waits for them to end. At ctx's deadline the streams still
// writing are cut; it returns ctx.Err() then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.sessions.Close()
	s.publishes.Close()
	return s.sessions.Shutdown(ctx)
}

// unavailable answers a request that comes after Shutdown began.
func unavailable(w http.ResponseWriter) {
	httpError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "server shutting down")
}

// httpError writes the JSON error body of the HTTP API.
func httpError(w http.ResponseWriter, status int, code, message string) {
	admit.HTTPError(w, status, code, message)
}

func newSessionID() string { return uuid.NewString() }
