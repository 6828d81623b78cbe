// Package ws is Tidings' WebSocket transport: the HTTP upgrade at /v1/ws,
// frame reading with every RFC 6455 check, the close handshake state
// machine, the JSON command codec, and one reader and one writer goroutine
// per session. It is built on github.com/gobwas/ws.
package ws

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
)

// Subprotocol is the WebSocket subprotocol the server selects when offered.
const Subprotocol = "pubsub.v1"

// Config tunes a Server. The zero value of each field means its default.
type Config struct {
	// NodeID is reported in every welcome frame. Default "tidings".
	NodeID string
	// MaxMessageSize is the largest inbound message in bytes, counted after
	// reassembly of fragments; one byte more closes with 1009. Default 65536.
	MaxMessageSize int
	// Heartbeat is the interval between server pings; a session silent for
	// two intervals is cut. Default 25s.
	Heartbeat time.Duration
	// AllowedOrigins lists the Origins allowed to connect; "*" allows all.
	// Entries are exact origins (scheme://host[:port]). Default (empty):
	// only the request's own host. Requests with no Origin header are not
	// checked.
	AllowedOrigins []string
	// CloseTimeout bounds the wait for a peer's close reply. Default 5s.
	CloseTimeout time.Duration
	// WriteTimeout bounds each socket write. Default 10s.
	WriteTimeout time.Duration
	// Logger receives session events. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.NodeID == "" {
		c.NodeID = "tidings"
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 65536
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 25 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 5 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server accepts WebSocket sessions and runs them against a broker.
type Server struct {
	cfg      Config
	b        *broker.Broker
	log      *slog.Logger
	upgrader ws.HTTPUpgrader
	wg       sync.WaitGroup

	// mu guards conns, and closing's change from false to true.
	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing atomic.Bool

	// publishing counts in-flight publishes; Shutdown waits for it after
	// setting closing, so every publish begun before shutdown completes.
	publishing sync.WaitGroup

	stats closeStats
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
}

// New returns a server for b.
func New(cfg Config, b *broker.Broker) *Server {
	cfg = cfg.withDefaults()
	return &Server{
		cfg: cfg,
		b:   b,
		log: cfg.Logger,
		upgrader: ws.HTTPUpgrader{
			Protocol: func(p string) bool { return p == Subprotocol },
		},
		conns: make(map[*conn]struct{}),
	}
}

// Stats returns a snapshot of the close-code counters.
func (s *Server) Stats() Stats {
	st := Stats{CloseSent: map[int]uint64{}, CloseReceived: map[int]uint64{}}
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

// ServeHTTP upgrades the request and runs the session until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET to open a WebSocket")
		return
	}
	if !s.originAllowed(r) {
		httpError(w, http.StatusForbidden, broker.CodeForbidden, "origin not allowed")
		return
	}
	s.mu.Lock()
	closing := s.closing.Load()
	if !closing {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closing {
		httpError(w, http.StatusServiceUnavailable, broker.CodeUnavailable, "server shutting down")
		return
	}
	defer s.wg.Done()

	nc, rw, _, err := s.upgrader.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		s.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := s.newConn(nc, rw.Reader, r.RemoteAddr)
	if !s.register(c) {
		c.shutdownNow()
		return
	}
	defer s.unregister(c)
	c.run()
}

func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
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

// Shutdown refuses new sessions, waits for publishes already begun, then
// closes every session with 1001 `server shutting down` after flushing its
// queue, and waits for the close replies. At ctx's deadline the remaining
// connections are cut. It returns ctx.Err() if the deadline was reached.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	s.mu.Unlock()

	s.publishing.Wait()

	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.requestClose(ws.StatusGoingAway, "server shutting down", closeGraceful)
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// beginPublish admits a publish unless shutdown has begun; the caller
// calls s.publishing.Done when it has finished.
func (s *Server) beginPublish() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.publishing.Add(1)
	return true
}

// originAllowed applies the Origin policy: no Origin header passes; "*"
// allows all; otherwise an exact allow-list, or the request's own host.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.cfg.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	for _, a := range s.cfg.AllowedOrigins {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	return false
}

// isLoopback reports whether remote (host:port) is a loopback address.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpError writes the JSON error body of the HTTP API.
func httpError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func newSessionID() string { return uuid.NewString() }
