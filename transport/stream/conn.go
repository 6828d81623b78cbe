package stream

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
)

// maxIdleBuffer is the largest write buffer a session keeps between
// bursts; a larger one is dropped so idle sessions stay small.
const maxIdleBuffer = 64 << 10

// slowCloseTimeout bounds the write of a slow consumer's close frame: its
// client reads too slowly to wait for.
const slowCloseTimeout = time.Second

// conn is one session. Its GET's handler goroutine writes the stream: the
// broker session's outbox, heartbeats and the close frame. The POSTs run
// commands (one at a time, under cmdMu) that queue their answers to the
// outbox; other goroutines only queue to it (deliveries, Reply) or ask
// for the close (Close, Disconnect).
type conn struct {
	srv     *Server
	key     string
	id      string
	w       http.ResponseWriter
	rc      *http.ResponseController
	r       *http.Request
	origin  string // the Origin of the GET, which its POSTs may come from too
	bs      *broker.Session
	session *session.Session
	ctx     context.Context
	cancel  context.CancelFunc

	logger func() *slog.Logger // the session's logger, made on first use

	wake chan struct{} // signalled when the outbox has frames or overflowed

	// mu guards the close request; closing is closed by the first.
	mu      sync.Mutex
	closing chan struct{}
	asked   bool
	cause   session.Cause
	code    uint16
	reason  string

	// cmdMu orders the POSTs' commands and guards ended: no command runs
	// once the session has ended.
	cmdMu sync.Mutex
	ended bool

	// The handler goroutine alone uses these; opened tells that the
	// stream was answered (and counted opened).
	opened bool
	buf    []byte
	spare  [][]byte
}

var _ session.Transport = (*conn)(nil)

// newConn returns the session of an admitted request, its welcome queued.
func (s *Server) newConn(w http.ResponseWriter, r *http.Request, pass *admit.Pass) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:     s,
		key:     newKey(),
		id:      uuid.NewString(),
		w:       w,
		rc:      http.NewResponseController(w),
		r:       r,
		origin:  r.Header.Get("Origin"),
		bs:      s.b.NewSession(),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
	var logOnce sync.Once
	var log *slog.Logger
	c.logger = func() *slog.Logger {
		logOnce.Do(func() { log = s.log.With("session", c.id, "remote", r.RemoteAddr) })
		return log
	}
	info := pass.Info(session.Info{ID: c.id, Remote: r.RemoteAddr, Log: c.logger})
	// The welcome is the first frame, ahead of anything a POST queues.
	c.bs.Send(replyFrame(session.Welcome{
		Type: "welcome", Session: c.id, Node: s.cfg.NodeID, Heartbeat: s.cfg.Heartbeat.Seconds(), User: pass.User(),
	}))
	c.session = session.New(ctx, &s.sessionCfg, c, c.bs, info)
	return c
}

// Reply queues reply as a text frame (session.Transport).
func (c *conn) Reply(reply any) { c.bs.Send(replyFrame(reply)) }

// Close ends the session for cause with a close frame (session.Transport).
func (c *conn) Close(cause session.Cause) { c.requestClose(cause, 0, "") }

// Disconnect ends the session for the server API with code and reason
// (session.Transport).
func (c *conn) Disconnect(code uint16, reason string) {
	c.requestClose(session.CauseDisconnected, code, reason)
}

// requestClose asks the writer to end the session; the first request
// wins. code and reason, when not zero, replace the cause's own.
func (c *conn) requestClose(cause session.Cause, code uint16, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asked {
		return
	}
	c.asked, c.cause, c.code, c.reason = true, cause, code, reason
	close(c.closing)
}

// closeState returns the requested close: its cause and the close
// frame's code and reason.
func (c *conn) closeState() (session.Cause, uint16, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	code, reason := c.code, c.reason
	if code == 0 {
		code = c.cause.Code()
	}
	if reason == "" {
		reason = c.cause.Reason()
	}
	return c.cause, code, reason
}

// cut ends the session without waiting for its writes (Shutdown's
// deadline).
func (c *conn) cut() { c.cancel() }

// signal wakes the writer (the outbox's notify: it must not block).
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// end releases what the session holds, and counts its end: its key is
// unknown from now on, and no command runs any more.
func (c *conn) end() {
	c.srv.unregister(c)
	if c.opened {
		c.mu.Lock()
		asked, cause, code := c.asked, c.cause, c.code
		c.mu.Unlock()
		if code == 0 {
			code = cause.Code()
		}
		if !asked || cause == session.CauseDropped || cause == session.CauseTimeout {
			cause, code = session.CauseDropped, 1006
		}
		c.srv.countClosed(cause, code)
	}
	c.cmdMu.Lock()
	c.ended = true
	c.cmdMu.Unlock()
	c.session.End()
	c.bs.Close()
	c.cancel()
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

// serve answers the GET and writes the stream until the session ends.
func (c *conn) serve(pass *admit.Pass) {
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
	// The stream outlives the server's read and write timeouts, which
	// bound a request, not a stream: each write has its own deadline
	// (WriteTimeout), and the request has no body left to read.
	_ = c.rc.SetReadDeadline(time.Time{})
	c.w.WriteHeader(http.StatusOK)
	if err := c.rc.Flush(); err != nil {
		c.srv.log.Warn("the response cannot be flushed: no stream", "err", err)
		return
	}
	c.srv.tel.opened.Add(c.ctx, 1, openedAttrs)
	c.opened = true
	// A connection reused after the stream must not keep its deadline.
	defer func() { _ = c.rc.SetWriteDeadline(time.Time{}) }()
	c.bs.Outbox().Notify(c.signal)
	c.signal()
	c.loop()
}

// allowOrigin lets the page that opened the session (its Origin, which
// the Door allowed) read the answers to its cross-origin requests.
func (c *conn) allowOrigin(h http.Header) {
	if c.origin != "" {
		h.Set("Access-Control-Allow-Origin", c.origin)
		h.Add("Vary", "Origin")
	}
}

// loop writes the stream until it ends.
func (c *conn) loop() {
	tick := time.NewTicker(c.srv.cfg.Heartbeat)
	defer tick.Stop()
	done := c.r.Context().Done()
	for {
		select {
		case <-c.wake:
			if !c.writeOutbox() {
				return
			}
		case <-tick.C:
			if c.write(append(c.buf[:0], pingFrame...), c.srv.cfg.WriteTimeout) != nil {
				c.requestClose(session.CauseDropped, 0, "")
				return
			}
		case <-c.closing:
			c.finish()
			return
		case <-done:
			c.requestClose(session.CauseDropped, 0, "")
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// writeOutbox writes what the outbox holds; false when the stream is
// over (a write failed).
func (c *conn) writeOutbox() bool {
	frames, overflowed := c.bs.Outbox().Drain(c.spare)
	if overflowed {
		c.Close(session.CauseSlowConsumer)
		c.spare = frames
		return true // the close request is served next
	}
	b := appendFrames(c.buf[:0], frames)
	c.spare = frames
	if len(b) == 0 {
		return true
	}
	if err := c.write(b, c.srv.cfg.WriteTimeout); err != nil {
		if c.bs.Outbox().Overflowed() {
			c.logger().Warn("slow consumer", "err", err)
		}
		c.requestClose(session.CauseDropped, 0, "")
		return false
	}
	return true
}

// appendFrames appends the frames' bytes to b and empties frames.
func appendFrames(b []byte, frames [][]byte) []byte {
	for _, f := range frames {
		b = append(b, f...)
	}
	clear(frames) // written: an idle session must not pin them
	return b
}

// finish writes what was queued before the close request (unless the
// outbox overflowed: a slow consumer resumes from history), then the
// close frame.
func (c *conn) finish() {
	cause, code, reason := c.closeState()
	if cause == session.CauseDropped || cause == session.CauseTimeout {
		return
	}
	c.bs.Close()
	frames, overflowed := c.bs.Outbox().Drain(c.spare)
	c.spare = frames
	b := c.buf[:0]
	timeout := c.srv.cfg.WriteTimeout
	if overflowed || cause == session.CauseSlowConsumer {
		cause = session.CauseSlowConsumer
		code, reason = cause.Code(), cause.Reason()
		c.mu.Lock()
		c.cause, c.code = cause, code
		c.mu.Unlock()
		timeout = min(timeout, slowCloseTimeout)
		clear(frames)
		c.logger().Warn("slow consumer")
	} else {
		b = appendFrames(b, frames)
	}
	b = append(b, closeFrame(code, reason)...)
	if err := c.write(b, timeout); err == nil {
		c.srv.countClose(code)
		c.logger().Debug("stream closed", "code", code, "reason", cause.Label())
	}
}

// write writes b and flushes it, within timeout.
func (c *conn) write(b []byte, timeout time.Duration) error {
	if cap(b) <= maxIdleBuffer {
		c.buf = b[:0]
	} else {
		c.buf = nil
	}
	_ = c.rc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.rc.Flush()
}
