package stream

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpstream"
)

// slowCloseTimeout bounds the write of a slow consumer's close frame: its
// client reads too slowly to wait for.
const slowCloseTimeout = time.Second

// conn is one session. Its GET's handler goroutine writes the stream: the
// broker session's outbox, heartbeats and the close frame. The POSTs run
// commands (one at a time, under cmdMu) that queue their answers to the
// outbox; other goroutines only queue to it (deliveries, Reply) or ask
// for the close (Close, Disconnect).
type conn struct {
	*httpstream.Conn // the stream, written with wire

	srv     *Server
	key     string
	id      string
	w       http.ResponseWriter
	origin  string // the Origin of the GET, which its POSTs may come from too
	bs      *broker.Session
	session *session.Session

	logger func() *slog.Logger // the session's logger, made on first use

	// cmdMu orders the POSTs' commands and guards ended: no command runs
	// once the session has ended.
	cmdMu sync.Mutex
	ended bool
}

var _ session.Transport = (*conn)(nil)

// newConn returns the session of an admitted request, its welcome queued.
func (s *Server) newConn(w http.ResponseWriter, r *http.Request, pass *admit.Pass) *conn {
	c := &conn{
		srv:    s,
		key:    newKey(),
		id:     uuid.NewString(),
		w:      w,
		origin: r.Header.Get("Origin"),
		bs:     s.b.NewSession(),
	}
	var logOnce sync.Once
	var log *slog.Logger
	c.logger = func() *slog.Logger {
		logOnce.Do(func() { log = s.log.With("session", c.id, "remote", r.RemoteAddr) })
		return log
	}
	c.Conn = httpstream.New(&s.streams, wire{}, w, r, c.bs, c.logger)
	info := pass.Info(session.Info{ID: c.id, Remote: r.RemoteAddr, Log: c.logger})
	// The welcome is the first frame, ahead of anything a POST queues.
	c.bs.Send(replyFrame(session.Welcome{
		Type: "welcome", Session: c.id, Node: s.cfg.NodeID, Heartbeat: s.cfg.Heartbeat.Seconds(), User: pass.User(),
	}))
	c.session = session.New(c.Context(), &s.sessionCfg, c, c.bs, info)
	return c
}

// Reply queues reply as a text frame (session.Transport).
func (c *conn) Reply(reply any) { c.bs.Send(replyFrame(reply)) }

// Close ends the session for cause with a close frame (session.Transport).
func (c *conn) Close(cause session.Cause) { c.RequestClose(cause, 0, "") }

// Disconnect ends the session for the server API with code and reason
// (session.Transport).
func (c *conn) Disconnect(code uint16, reason string) {
	c.RequestClose(session.CauseDisconnected, code, reason)
}

// Discard releases the session of a stream that never opened
// (httpstream.Stream).
func (c *conn) Discard() { c.end() }

// end releases what the session holds, and counts its end: its key is
// unknown from now on, and no command runs any more.
func (c *conn) end() {
	c.srv.sessions.Unregister(c.key, c)
	c.cmdMu.Lock()
	c.ended = true
	c.cmdMu.Unlock()
	c.End(c.session)
}

// run runs cmds, the commands of one POST, in order, as WebSocket text
// messages; false when the session has ended (nothing was run).
func (c *conn) run(cmds [][]byte) bool {
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	if c.ended {
		return false
	}
	for _, p := range cmds {
		if c.session.Handle(p) {
			break // the session was closed: it reads no more
		}
	}
	return true
}

// Serve answers the GET and writes the stream until the session ends
// (httpstream.Stream).
func (c *conn) Serve(pass *admit.Pass) {
	defer c.end()
	if claims := pass.Claims; claims != nil {
		if !claims.Expires.IsZero() {
			c.session.ArmExpiry(claims.Expires)
		}
		// Right after the welcome, before the client's first command: the
		// client learns the key from the headers below.
		c.session.SubscribeChannels(claims.Channels)
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(KeyHeader, c.key)
	h.Set("Access-Control-Expose-Headers", KeyHeader)
	c.allowOrigin(h)
	if err := c.Open(); err != nil {
		c.srv.log.Warn("the response cannot be flushed: no stream", "err", err)
		return
	}
	c.Run()
}

// allowOrigin lets the page that opened the session (its Origin, which
// the Door allowed) read the answers to its cross-origin requests.
func (c *conn) allowOrigin(h http.Header) {
	if c.origin != "" {
		h.Set("Access-Control-Allow-Origin", c.origin)
		h.Add("Vary", "Origin")
	}
}

// wire writes the stream: the WebSocket frames of the outbox as they are,
// and a close frame at the end (the heartbeat, pingFrame, is the server's
// httpstream.Options.Ping).
type wire struct{}

var _ httpstream.Wire = wire{}

// AppendFrames appends the frames' bytes to b until it holds limit bytes
// or more; it returns b and the frames left (httpstream.Wire).
func (wire) AppendFrames(b []byte, frames [][]byte, limit int) ([]byte, [][]byte) {
	for i, f := range frames {
		if len(b) >= limit {
			return b, frames[i:]
		}
		b = append(b, f...)
	}
	return b, nil
}

// AppendClose appends the close frame: code, and reason or else the
// cause's (httpstream.Wire).
func (wire) AppendClose(b []byte, cause session.Cause, code uint16, reason string) []byte {
	if reason == "" {
		reason = cause.Reason()
	}
	return append(b, closeFrame(code, reason)...)
}
