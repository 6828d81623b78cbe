package sse

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
)

// conn is one stream. Its handler goroutine (ServeHTTP's) subscribes and
// then writes: the broker session's outbox, heartbeats, and the close
// event. Other goroutines only queue to the outbox (Reply) or ask for the
// close (Close, Disconnect).
type conn struct {
	srv     *Server
	w       http.ResponseWriter
	rc      *http.ResponseController
	r       *http.Request
	bs      *broker.Session
	session *session.Session
	id      string
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

	// The handler goroutine alone uses these; opened tells that the
	// welcome was queued.
	opened bool
	cur    cursor
	buf    []byte
	spare  [][]byte
}

var _ session.Transport = (*conn)(nil)

// newConn returns the session of a request that was admitted with
// claims (nil without a token verifier).
func (s *Server) newConn(w http.ResponseWriter, r *http.Request, pass *admit.Pass) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:     s,
		w:       w,
		rc:      http.NewResponseController(w),
		r:       r,
		bs:      s.b.NewSessionEncoded(s.enc),
		id:      newSessionID(),
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
	// Receive-only: an anonymous stream may subscribe to what an
	// anonymous WebSocket session may; it sends no publish.
	info := pass.Info(session.Info{ID: c.id, Remote: r.RemoteAddr, Log: c.logger})
	c.session = session.New(ctx, &s.sessionCfg, c, c.bs, info)
	return c
}

// Reply queues reply as an event (session.Transport).
func (c *conn) Reply(reply any) { c.bs.Send(encodeReply(reply)) }

// Close ends the stream for cause with a `close` event (session.Transport).
func (c *conn) Close(cause session.Cause) { c.requestClose(cause, cause.Code(), cause.Reason()) }

// Disconnect ends the stream for the server API with code and reason
// (session.Transport).
func (c *conn) Disconnect(code uint16, reason string) {
	c.requestClose(session.CauseDisconnected, code, reason)
}

// requestClose asks the writer to end the stream; the first request wins.
func (c *conn) requestClose(cause session.Cause, code uint16, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asked {
		return
	}
	c.asked, c.cause, c.code, c.reason = true, cause, code, reason
	close(c.closing)
}

// cut ends the stream without waiting for its writes (Shutdown's deadline).
func (c *conn) cut() { c.cancel() }

// signal wakes the writer (the outbox's notify: it must not block).
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// end releases what the session holds and counts its end.
func (c *conn) end() {
	c.mu.Lock()
	asked, cause, code := c.asked, c.cause, c.code
	c.mu.Unlock()
	if !asked || cause == session.CauseDropped || cause == session.CauseTimeout {
		cause, code = session.CauseDropped, 1006
	}
	if c.opened {
		c.srv.countClosed(cause, code)
	}
	c.session.End()
	c.bs.Close()
	c.cancel()
}

// serve subscribes the stream to topics, resuming the exact ones its
// Last-Event-ID names, and writes it until it ends.
func (c *conn) serve(topics []string, claims *auth.Claims) {
	defer c.end()
	s := c.srv
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if c.r.ProtoMajor == 1 {
		h.Set("Connection", "keep-alive")
	}
	// The stream outlives the server's read and write timeouts, which
	// bound a request, not a stream: each write has its own deadline
	// (WriteTimeout), and the request has no body left to read.
	_ = c.rc.SetReadDeadline(time.Time{})
	c.w.WriteHeader(http.StatusOK)
	if err := c.rc.Flush(); err != nil {
		s.log.Warn("the response cannot be flushed: no event stream", "err", err)
		return
	}

	c.bs.Outbox().Notify(c.signal)
	var user string
	if claims != nil {
		user = claims.Subject
	}
	c.bs.Send(encodeReply(session.Welcome{
		Type: "welcome", Session: c.id, Node: s.cfg.NodeID, Heartbeat: s.cfg.Heartbeat.Seconds(), User: user,
	}))
	s.tel.opened.Add(c.ctx, 1, openedAttrs)
	c.opened = true
	if claims != nil {
		if !claims.Expires.IsZero() {
			c.session.ArmExpiry(claims.Expires)
		}
		c.session.SubscribeChannels(claims.Channels)
	}
	last := lastEventID(c.r)
	resume, ok := parseCursor(last)
	if !ok && last != "" {
		c.logger().Debug("Last-Event-ID is not a cursor: ignored")
	}
	for _, t := range topics {
		cmd := subscribeCommand{Op: "subscribe", Topic: t}
		if pos, ok := resume[t]; ok {
			cmd.Since = &sinceJSON{Offset: pos.Offset, Epoch: pos.Epoch}
			c.cur.set(t, pos)
		}
		p, _ := json.Marshal(cmd)
		if c.session.Handle(p) {
			break
		}
	}
	c.run()
}

// subscribeCommand is the `subscribe` a stream runs for each topic.
type subscribeCommand struct {
	Op    string     `json:"op"`
	Topic string     `json:"topic"`
	Since *sinceJSON `json:"since,omitempty"`
}

type sinceJSON struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// run writes the stream until it ends.
func (c *conn) run() {
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
			if c.write(append(c.buf[:0], ": ping\n\n"...)) != nil {
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
	c.spare = frames
	// Written in bursts of about maxBurst bytes: a backlog does not grow
	// one buffer per stream to its size.
	for len(frames) > 0 {
		var b []byte
		b, frames = c.appendFrames(c.buf[:0], frames, maxBurst)
		if len(b) > 0 && c.write(b) != nil {
			return false
		}
	}
	return true
}

// maxBurst is the size past which a stream writes what it has encoded of
// its outbox before it encodes more.
const maxBurst = 64 << 10

// appendFrames appends frames, each position marker replaced with the
// `id:` of the stream's cursor once moved to that position, until b holds
// limit bytes or more; it returns b and the frames left.
func (c *conn) appendFrames(b []byte, frames [][]byte, limit int) ([]byte, [][]byte) {
	for i, f := range frames {
		if len(b) >= limit {
			return b, frames[i:]
		}
		kind, topic, pos, rest, ok := parseMark(f)
		if !ok {
			b = append(b, rest...)
			continue
		}
		if kind != markKeep {
			c.cur.set(topic, pos)
		} else if _, held := c.cur.pos[topic]; !held {
			c.cur.set(topic, pos)
		}
		b = append(b, "id: "...)
		b = append(b, c.cur.String()...)
		b = append(b, '\n')
		b = append(b, rest...)
	}
	return b, nil
}

// finish writes what was queued before the close request (unless the
// outbox overflowed), then the close event.
func (c *conn) finish() {
	c.mu.Lock()
	cause, code, reason := c.cause, c.code, c.reason
	c.mu.Unlock()
	if cause == session.CauseDropped || cause == session.CauseTimeout {
		return
	}
	c.bs.Close()
	frames, overflowed := c.bs.Outbox().Drain(c.spare)
	b := c.buf[:0]
	if overflowed {
		cause = session.CauseSlowConsumer
		code, reason = cause.Code(), cause.Reason()
		c.mu.Lock()
		c.cause, c.code = cause, code
		c.mu.Unlock()
	} else {
		b, _ = c.appendFrames(b, frames, math.MaxInt)
	}
	b = append(b, closeEvent(code, reason)...)
	if err := c.write(b); err == nil {
		c.logger().Debug("stream closed", "code", code, "reason", cause.Label())
	}
}

// write writes b and flushes it, within the write timeout.
func (c *conn) write(b []byte) error {
	c.buf = b[:0]
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.rc.Flush()
}

// lastEventID returns the cursor the request resumes from: its
// Last-Event-ID header, which an EventSource sends when it reconnects by
// itself, else its `last_event_id` query parameter, with which a client
// opening a new stream (other topics) carries its cursor over.
func lastEventID(r *http.Request) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return r.URL.Query().Get("last_event_id")
}
