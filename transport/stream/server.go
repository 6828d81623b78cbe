package stream

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/internal/gate"
	telem "github.com/tidings-io/tidings/internal/telemetry"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Config tunes a Server. The zero value of each field means its default.
type Config struct {
	// Settings are those of every streamed transport: NodeID, Heartbeat
	// (between ping frames), WriteTimeout and Logger.
	httpstream.Settings
	// Services are what the sessions are given (session.Services); the
	// server's own door (without Door) takes Tokens and Hooks too.
	session.Services
	// OpLimits are each session's command rate (session.OpLimits).
	session.OpLimits
	// Door admits the requests that open sessions (Origin, the node's
	// bounds on sessions and per address, the token, the connect hook)
	// and counts the refusals of the transport and its sessions: a
	// node's transports share the bounds of one (admit.Door.For).
	// Default (nil): a door of the server's own, with MaxSessions,
	// Tokens, Hooks, MeterProvider and Logger, and admit's defaults for
	// the rest (only the node's own pages as Origins).
	Door *admit.Door
	// MaxSessions bounds the sessions of the server's own door (without
	// Door), as admit.Policy.MaxSessions does.
	MaxSessions int
	// MaxBodySize is the largest POST body in bytes, inclusive; one byte
	// more is answered 413 and nothing of it is run. Default 65536.
	MaxBodySize int
	// TracerProvider traces publishes. Default nil: off.
	TracerProvider trace.TracerProvider
	// MeterProvider receives the sessions metrics
	// (tidings_sessions_opened_total, tidings_sessions_closed_total,
	// transport "http-stream") and, for the server's own door, the
	// refusals. Default nil: none.
	MeterProvider metric.MeterProvider
}

// DefaultMaxBodySize is the default of Config.MaxBodySize; the other
// defaults are httpstream's (Settings), session's (OpLimits) and
// admit's (MaxSessions).
const DefaultMaxBodySize = 65536

func (c Config) withDefaults() Config {
	c.Settings = c.Settings.WithDefaults()
	c.OpLimits = c.OpLimits.WithDefaults()
	return defaults.Fill(c, Config{MaxBodySize: DefaultMaxBodySize})
}

// transportName names the transport in spans, metrics and the Door.
const transportName = "http-stream"

// Server serves HTTP streaming sessions against a broker whose default
// encoder is transport/ws's Encoder.
type Server struct {
	cfg  Config
	b    *broker.Broker
	log  *slog.Logger
	door *admit.Door

	// sessions admits sessions until Shutdown, counts those not yet
	// ended and holds those registered, by key; posts does the same for
	// POSTs being run, and publishes for the publishes among their
	// commands.
	sessions  httpstream.Sessions[string, *conn]
	posts     gate.Gate
	publishes gate.Gate

	// mu guards closeSent.
	mu        sync.Mutex
	closeSent map[int]uint64

	// streams is what the sessions' streams share.
	streams    httpstream.Options
	sessionCfg session.Config
}

// New returns a server for b.
func New(cfg Config, b *broker.Broker) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		b:         b,
		log:       cfg.Logger.With("transport", transportName, "node", cfg.NodeID),
		door:      cfg.Door,
		closeSent: make(map[int]uint64),
	}
	if s.door == nil {
		s.door = admit.New(admit.Config{Policy: admit.Policy{MaxSessions: cfg.MaxSessions}, Tokens: cfg.Tokens, Hooks: cfg.Hooks,
			Transport: transportName, MeterProvider: cfg.MeterProvider, Logger: cfg.Logger})
	}
	s.sessionCfg = session.Config{
		Services:  cfg.Services,
		OpLimits:  cfg.OpLimits,
		Broker:    b,
		Publishes: &s.publishes,
		Refused:   s.door.Tally(),
		Tracer:    telem.Tracer(cfg.TracerProvider, scope),
		Protocol:  transportName,
		API:       broker.APIOther,
	}
	s.streams = httpstream.Options{
		Heartbeat:        cfg.Heartbeat,
		WriteTimeout:     cfg.WriteTimeout,
		SlowCloseTimeout: slowCloseTimeout,
		Ping:             pingFrame,
		Telemetry: httpstream.NewTelemetry(cfg.MeterProvider, scope, transportName,
			"HTTP streaming sessions", s.log),
		CloseSent: s.countClose,
	}
	return s
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	// Sessions is the number of sessions open.
	Sessions int
	// CloseSent counts the close frames sent, by code.
	CloseSent map[int]uint64
	// Refused counts the transport's refusals by reason, every reason
	// present: the Door's and the sessions' (admit.Door.Refused).
	Refused map[limit.Reason]uint64
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Sessions: s.sessions.Len(), Refused: s.door.Refused()}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.CloseSent = make(map[int]uint64, len(s.closeSent))
	for code, n := range s.closeSent {
		st.CloseSent[code] = n
	}
	return st
}

// Refused returns the transport's refusals so far, by reason (see
// Stats.Refused).
func (s *Server) Refused() map[limit.Reason]uint64 { return s.door.Refused() }

// Sessions returns the number of sessions open.
func (s *Server) Sessions() int { return s.sessions.Len() }

// ServeHTTP serves both routes: GET …/stream opens a session and streams
// it until it ends; POST …/stream/<key> runs commands of the session of
// key. Mount it at /v1/stream and /v1/stream/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if key == "" || key == "stream" {
		s.open(w, r)
		return
	}
	s.post(w, r, key)
}

// open runs the session a GET opens until it ends.
func (s *Server) open(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		admit.HTTPError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET to open a stream, POST to send it commands")
		return
	}
	httpstream.Serve(&s.sessions, s.door, w, r, func(pass *admit.Pass) (string, *conn) {
		c := s.newConn(w, r, pass)
		return c.key, c
	}, unavailable)
}

// unavailable answers a request that comes after Shutdown began.
func unavailable(w http.ResponseWriter) {
	admit.HTTPError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "server shutting down")
}

// lookup returns the session of key, or nil.
func (s *Server) lookup(key string) *conn {
	if len(key) != keyLen {
		return nil
	}
	c, _ := s.sessions.Lookup(key)
	return c
}

// countClose counts a close frame sent with code.
func (s *Server) countClose(code uint16) {
	s.mu.Lock()
	s.closeSent[int(code)]++
	s.mu.Unlock()
}

// Shutdown refuses new sessions and POSTs, waits for the POSTs being run
// (their answers are queued to their streams), then ends every session
// with a close frame, 1001 `server shutting down`, after the frames
// already queued, and waits for the sessions to end. At ctx's deadline
// the sessions still writing are cut; it returns ctx.Err() then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.sessions.Close()
	s.posts.Close()
	s.publishes.Close()

	ran := s.posts.Wait(ctx)
	if err := s.sessions.Shutdown(ctx); err != nil {
		return err
	}
	return ran
}
