// Package ws is Tidings' WebSocket transport: the HTTP upgrade at /v1/ws,
// frame reading with every RFC 6455 check, the close handshake state
// machine, the JSON command codec, and the event loop that runs sessions
// without a goroutine of their own while they are idle: one epoll set
// wakes a reader when a socket has bytes, and a writer pool (a goroutine
// per core) writes each session's queued frames with one writev per turn.
// It is built on github.com/gobwas/ws.
package ws

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/internal/gate"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Config tunes a Server. The zero value of each field means its default.
type Config struct {
	// Services are what the sessions are given (session.Services). Hooks
	// is asked at connect too, before the upgrade, by the server's own
	// door (without Door).
	session.Services
	// OpLimits are each session's command rate (session.OpLimits);
	// SetLimits changes them.
	session.OpLimits
	// Policy is what the server's own door (without Door) admits: the
	// Origins, the bound on the server's sessions and the per-address
	// ones (admit.Policy).
	admit.Policy
	// Door admits the upgrades: a node's transports share one, so that
	// its bounds hold for the node. Default (nil): a door of the
	// server's own, made of Policy, Tokens and Hooks (Policy then applies
	// only through it; Tokens and Hooks serve the sessions too).
	Door *admit.Door

	// NodeID is reported in every welcome frame. Default "tidings".
	NodeID string
	// MaxMessageSize is the largest inbound message in bytes, counted after
	// reassembly of fragments; one byte more closes with 1009. Default 65536.
	MaxMessageSize int
	// Heartbeat is the interval between server pings; a session silent for
	// two intervals is cut. Default 25s.
	Heartbeat time.Duration
	// CloseTimeout bounds the wait for a peer's close reply. Default 5s.
	CloseTimeout time.Duration
	// WriteTimeout bounds how long a write may wait on a full socket
	// while the peer reads nothing (on TLS: each write). Default 10s.
	WriteTimeout time.Duration
	// Logger receives the server's events, each with node (NodeID); a
	// session's also carry session, remote and, when the upgrade request
	// had a traceparent, trace_id. Default: discard.
	Logger *slog.Logger
	// TracerProvider traces WebSocket publishes. Default nil: off.
	TracerProvider trace.TracerProvider
	// MeterProvider receives the sessions, close, byte, delivery latency
	// and queue depth metrics. Default nil: none.
	MeterProvider metric.MeterProvider
	// Propagator reads the trace context of upgrade requests. Default W3C
	// trace context and baggage.
	Propagator propagation.TextMapPropagator

	// GoroutineReaders gives every session a goroutine that waits on its
	// socket, as on platforms without epoll. By default (Linux) idle
	// sessions are watched by one epoll set and a reader goroutine runs
	// only while a session has bytes to read. TLS sessions always have
	// their own reader.
	GoroutineReaders bool
	// Compression negotiates permessage-deflate (RFC 7692) with clients
	// that offer it: frames of at least CompressionMinSize payload bytes
	// are sent compressed, each message compressed once per node
	// (without context takeover) whatever its subscribers, and the
	// client's compressed messages are inflated. New then registers a
	// DeflateEncoder with the broker (broker.AddEncoder). Default false.
	Compression bool
	// CompressionMinSize is the smallest payload, in bytes, sent
	// compressed; smaller ones go as they are. Default 256.
	CompressionMinSize int
}

// The defaults of Config, which cmd/broker's flags take too; those of
// its OpLimits are session's and those of its Policy admit's.
const (
	DefaultNodeID         = "tidings"
	DefaultMaxMessageSize = 65536
	DefaultHeartbeat      = 25 * time.Second
	DefaultCloseTimeout   = 5 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultMaxSessions    = admit.DefaultMaxSessions
	DefaultIPConnRate     = admit.DefaultIPConnRate
	DefaultIPConnBurst    = admit.DefaultIPConnBurst
	DefaultIPMaxConns     = admit.DefaultIPMaxConns
	DefaultOpRate         = session.DefaultOpRate
	DefaultOpBurst        = session.DefaultOpBurst
)

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	NodeID:             DefaultNodeID,
	MaxMessageSize:     DefaultMaxMessageSize,
	Heartbeat:          DefaultHeartbeat,
	CloseTimeout:       DefaultCloseTimeout,
	WriteTimeout:       DefaultWriteTimeout,
	CompressionMinSize: DefaultCompressionMinSize,
	Logger:             defaults.Discard(),
}

func (c Config) withDefaults() Config {
	c.OpLimits = c.OpLimits.WithDefaults()
	return defaults.Fill(c, configDefaults)
}

// Server accepts WebSocket sessions and runs them against a broker.
type Server struct {
	cfg      Config
	b        *broker.Broker
	log      *slog.Logger
	upgrader ws.HTTPUpgrader

	// sessions admits upgrades until Shutdown and counts the sessions
	// not yet released; publishes does the same for WebSocket publishes,
	// which Shutdown waits for before it closes the sessions.
	sessions  gate.Gate
	publishes gate.Gate

	// mu guards conns and loop, and orders Shutdown's closing of the
	// gates with register.
	mu    sync.Mutex
	conns map[*conn]struct{}
	loop  *eventLoop // runs while conns is not empty

	stats closeStats
	tel   telemetry

	door    *admit.Door
	refused *limit.Tally // the door's: its refusals and the sessions'

	// sessionCfg is what the sessions' commands share.
	sessionCfg session.Config
	// maxMessage and opLimits are the limits SetLimits changes.
	maxMessage atomic.Int64
	opLimits   atomic.Pointer[session.OpLimits]
	// compression is nil unless Config.Compression is on.
	compression *compression
}

// closeStats counts close codes by code, 1000–1015.
type closeStats struct {
	sent     [16]atomic.Uint64
	received [16]atomic.Uint64
}

func (c *closeStats) count(arr *[16]atomic.Uint64, code ws.StatusCode) {
	if code >= 1000 && code < 1016 {
		arr[code-1000].Add(1)
	}
}

// Stats is a snapshot of the server's close-code counters.
type Stats struct {
	// CloseSent counts close frames sent, by code (1000–1015).
	CloseSent map[int]uint64
	// CloseReceived counts sessions ended by the peer, by code: 1005 for a
	// close frame with no code, 1006 for a connection that dropped without
	// a close frame.
	CloseReceived map[int]uint64
	// Refused counts refusals by reason (limit.Reason*), every
	// reason present.
	Refused map[limit.Reason]uint64
}

// New returns a server for b.
func New(cfg Config, b *broker.Broker) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg: cfg,
		b:   b,
		log: cfg.Logger,
		upgrader: ws.HTTPUpgrader{
			Protocol: func(p string) bool { return p == protocol.Subprotocol },
		},
		conns: make(map[*conn]struct{}),
		door:  cfg.Door,
	}
	if s.door == nil {
		s.door = admit.New(admit.Config{Policy: cfg.Policy, Tokens: cfg.Tokens, Hooks: cfg.Hooks,
			MeterProvider: cfg.MeterProvider, Logger: cfg.Logger})
	}
	s.refused = s.door.Tally()
	if cfg.Compression {
		s.compression = newCompression(b, cfg.CompressionMinSize)
	}
	s.setupTelemetry()
	s.sessionCfg = session.Config{
		Services:  cfg.Services,
		OpLimits:  cfg.OpLimits,
		Broker:    b,
		Publishes: &s.publishes,
		Refused:   s.refused,
		Tracer:    s.tel.tracer,
		Protocol:  "websocket",
		API:       broker.APIWS,
		Limits:    func() session.OpLimits { return *s.opLimits.Load() },
	}
	s.maxMessage.Store(int64(cfg.MaxMessageSize))
	s.opLimits.Store(&cfg.OpLimits)
	return s
}

// Stats returns a snapshot of the close-code counters.
func (s *Server) Stats() Stats {
	st := Stats{CloseSent: map[int]uint64{}, CloseReceived: map[int]uint64{}, Refused: s.refused.Snapshot()}
	for i := range s.stats.sent {
		if n := s.stats.sent[i].Load(); n > 0 {
			st.CloseSent[1000+i] = n
		}
		if n := s.stats.received[i].Load(); n > 0 {
			st.CloseReceived[1000+i] = n
		}
	}
	return st
}

// ServeHTTP upgrades the request and starts the session; it returns
// while the session runs (its goroutines run only while it has bytes to
// read or frames to write).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET to open a WebSocket")
		return
	}
	if !s.sessions.Enter() {
		httpError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "server shutting down")
		return
	}
	started := false
	defer func() {
		if !started {
			s.sessions.Leave()
		}
	}()

	pass := s.door.Admit(w, r)
	if pass == nil {
		return
	}
	defer func() {
		if !started {
			pass.Release()
		}
	}()

	upgrader := s.upgrader
	var deflate negotiation
	if s.compression != nil {
		upgrader.Negotiate = deflate.offer
	}
	nc, rw, _, err := upgrader.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		s.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := s.newConn(nc, r.RemoteAddr, pass.User(), deflate.inflater())
	c.traceFrom(r.Header)
	c.client = pass.Client.Addr
	info := pass.Info(session.Info{ID: c.id, Remote: c.remote, Link: c.link, Log: c.logger})
	claims := pass.Claims
	c.session = session.New(c.ctx, &s.sessionCfg, c, c.sess, info)
	registered, pollErr := s.register(c)
	if !registered {
		c.shutdownNow()
		return
	}
	started = true
	c.admission = pass.Release
	if claims != nil {
		// Armed once the session is registered: its close needs the
		// event loop.
		if !claims.Expires.IsZero() {
			c.session.ArmExpiry(claims.Expires)
		}
		// Right after the welcome, before the client's first command.
		c.session.SubscribeChannels(claims.Channels)
	}
	c.start(rw.Reader, pollErr)
}

// register adds c to the server's sessions and to the event loop (started
// with the first session). It reports false when shutdown has begun, and
// why c's socket is not polled when the loop has a poller but could not
// take it.
func (s *Server) register(c *conn) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions.Closed() {
		return false, nil
	}
	if s.loop == nil {
		s.loop = s.startLoop()
	}
	now := time.Now()
	// The first ping comes between half an interval and one interval
	// from now, at random, so that sessions that connected together
	// are not pinged together.
	c.lastPing = now
	if half := s.cfg.Heartbeat / 2; half > 0 {
		c.lastPing = now.Add(-rand.N(half))
	}
	c.lastRead.Store(now.UnixNano())
	c.loop = s.loop
	var err error
	c.polled, err = s.loop.add(c)
	s.conns[c] = struct{}{}
	return true, err
}

// endSession releases a session whose reader and writer have ended.
func (s *Server) endSession(c *conn) {
	c.releaseSession()
	s.mu.Lock()
	delete(s.conns, c)
	c.loop.remove(c)
	if len(s.conns) == 0 && s.loop != nil {
		s.loop.stop()
		s.loop = nil
	}
	s.mu.Unlock()
	c.admission()
	s.sessions.Leave()
}

// appendConns appends the registered sessions to dst.
func (s *Server) appendConns(dst []*conn) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		dst = append(dst, c)
	}
	return dst
}

// Shutdown refuses new sessions, waits for publishes already begun, then
// closes every session with 1001 `server shutting down` after flushing its
// queue, and waits for the close replies. At ctx's deadline the remaining
// connections are cut. It returns ctx.Err() if the deadline was reached.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.sessions.Close()
	s.publishes.Close()
	s.mu.Unlock()

	// Publishes already begun finish first, within ctx.
	published := s.publishes.Wait(ctx)

	if err := session.Drain(ctx, &s.sessions, s.appendConns, (*conn).cut); err != nil {
		return err
	}
	return published
}

// httpError writes the JSON error body of the HTTP API.
func httpError(w http.ResponseWriter, status int, code, message string) {
	admit.HTTPError(w, status, code, message)
}

func newSessionID() string { return uuid.NewString() }
