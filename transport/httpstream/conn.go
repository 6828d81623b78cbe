// Package httpstream is the session plumbing of the transports that
// stream a session down one long HTTP response (transport/sse,
// transport/stream): the writer of a stream (its outbox written in
// bursts, heartbeats, the close that ends it), the close request that
// the first close wins, the registry of a server's streams with their
// Shutdown, and the sessions metrics. What a stream carries is its
// transport's: a Wire encodes it.
package httpstream

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
)

// Wire is what a transport writes on its streams.
type Wire interface {
	// AppendFrames appends frames, the outbox's in order, to b until b
	// holds limit bytes or more, and returns b and the frames left. It
	// appends at least one frame when b is empty and frames are not.
	AppendFrames(b []byte, frames [][]byte, limit int) ([]byte, [][]byte)
	// AppendClose appends the end of the stream: a close for cause with
	// code (not 0) and reason, as RequestClose was given it.
	AppendClose(b []byte, cause session.Cause, code uint16, reason string) []byte
}

// Queue is what a stream writes: a broker session (*broker.Session).
type Queue interface {
	// Outbox is the queue of the session's frames.
	Outbox() *broker.Outbox
	// Close ends the session: its outbox takes no more frames.
	Close()
}

// Conn is one stream. Its handler goroutine opens it (Open) and writes it
// (Run): the broker session's outbox, heartbeats and the close; other
// goroutines only queue to the outbox or ask for the close
// (RequestClose, Cut).
type Conn struct {
	opt  *Options
	wire Wire
	w    http.ResponseWriter
	rc   *http.ResponseController
	done <-chan struct{} // the request's end
	bs   Queue
	log  func() *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	wake chan struct{} // signalled when the outbox has frames or overflowed

	// mu guards the close request; closing is closed by the first.
	mu      sync.Mutex
	closing chan struct{}
	asked   bool
	cause   session.Cause
	code    uint16
	reason  string

	// The handler goroutine alone uses these; opened tells that the
	// stream was answered (and counted opened).
	opened bool
	buf    []byte
	spare  [][]byte
}

// New returns the stream of the response w to r, which writes bs's
// outbox with wire and logs to log's logger.
func New(opt *Options, wire Wire, w http.ResponseWriter, r *http.Request, bs Queue, log func() *slog.Logger) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{
		opt:     opt,
		wire:    wire,
		w:       w,
		rc:      http.NewResponseController(w),
		done:    r.Context().Done(),
		bs:      bs,
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
}

// Context is the stream's: done once it has ended or was cut.
func (c *Conn) Context() context.Context { return c.ctx }

// RequestClose asks the writer to end the stream for cause; the first
// request wins. A code of 0 stands for the cause's.
func (c *Conn) RequestClose(cause session.Cause, code uint16, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asked {
		return
	}
	c.asked, c.cause, c.code, c.reason = true, cause, code, reason
	close(c.closing)
}

// closeState returns the requested close, a code of 0 replaced with the
// cause's.
func (c *Conn) closeState() (asked bool, cause session.Cause, code uint16, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	code = c.code
	if code == 0 {
		code = c.cause.Code()
	}
	return c.asked, c.cause, code, c.reason
}

// Cut ends the stream without waiting for its writes (Shutdown's
// deadline).
func (c *Conn) Cut() { c.cancel() }

// signal wakes the writer (the outbox's notify: it must not block).
func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Open answers the request, 200 with the headers set so far, and flushes
// the answer; an error when the response cannot be flushed (no stream).
// The stream outlives the server's read and write timeouts, which bound a
// request, not a stream: each write has its own deadline (WriteTimeout),
// and the request has no body left to read.
func (c *Conn) Open() error {
	_ = c.rc.SetReadDeadline(time.Time{})
	c.w.WriteHeader(http.StatusOK)
	if err := c.rc.Flush(); err != nil {
		return err
	}
	if c.opt.Telemetry != nil {
		c.opt.Telemetry.Opened(c.ctx)
	}
	c.opened = true
	c.bs.Outbox().Notify(c.signal)
	c.signal()
	return nil
}

// End releases what the stream holds: it counts the stream's end (when it
// was opened), ends s, the session it carries, closes the broker session
// and cancels the stream's context.
func (c *Conn) End(s *session.Session) {
	asked, cause, code, _ := c.closeState()
	if !asked || cause == session.CauseDropped || cause == session.CauseTimeout {
		cause, code = session.CauseDropped, 1006
	}
	if c.opened && c.opt.Telemetry != nil {
		c.opt.Telemetry.Closed(cause, code)
	}
	s.End()
	c.bs.Close()
	c.cancel()
}

// Run writes the stream until it ends.
func (c *Conn) Run() {
	// A connection reused after the stream must not keep its deadline.
	defer func() { _ = c.rc.SetWriteDeadline(time.Time{}) }()
	tick := time.NewTicker(c.opt.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-c.wake:
			if !c.writeOutbox() {
				return
			}
		case <-tick.C:
			if c.write(append(c.buf[:0], c.opt.Ping...), c.opt.WriteTimeout) != nil {
				c.RequestClose(session.CauseDropped, 0, "")
				return
			}
		case <-c.closing:
			c.finish()
			return
		case <-c.done:
			c.RequestClose(session.CauseDropped, 0, "")
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// writeOutbox writes what the outbox holds, in bursts of about MaxBurst
// bytes; false when the stream is over (a write failed).
func (c *Conn) writeOutbox() bool {
	frames, overflowed := c.bs.Outbox().Drain(c.spare)
	c.spare = frames
	defer clear(frames) // written: an idle stream must not pin them
	if overflowed {
		slow := session.CauseSlowConsumer
		c.RequestClose(slow, slow.Code(), slow.Reason())
		return true // the close request is served next
	}
	for rest := frames; len(rest) > 0; {
		var b []byte
		b, rest = c.wire.AppendFrames(c.buf[:0], rest, MaxBurst)
		if len(b) == 0 {
			continue
		}
		if err := c.write(b, c.opt.WriteTimeout); err != nil {
			if c.bs.Outbox().Overflowed() {
				c.log().Warn("slow consumer", "err", err)
			}
			c.RequestClose(session.CauseDropped, 0, "")
			return false
		}
	}
	return true
}

// finish writes what was queued before the close request (unless the
// outbox overflowed: a slow consumer resumes from history), then the
// close.
func (c *Conn) finish() {
	_, cause, code, reason := c.closeState()
	if cause == session.CauseDropped || cause == session.CauseTimeout {
		return
	}
	c.bs.Close()
	frames, overflowed := c.bs.Outbox().Drain(c.spare)
	c.spare = frames
	defer clear(frames)
	timeout := c.opt.WriteTimeout
	if overflowed || cause == session.CauseSlowConsumer {
		cause = session.CauseSlowConsumer
		code, reason = cause.Code(), cause.Reason()
		c.mu.Lock()
		c.cause, c.code = cause, code
		c.mu.Unlock()
		if c.opt.SlowCloseTimeout > 0 {
			timeout = min(timeout, c.opt.SlowCloseTimeout)
		}
		frames = nil
		c.log().Warn("slow consumer")
	}
	// The backlog in bursts, the close after the last.
	b := c.buf[:0]
	for rest := frames; len(rest) > 0; {
		b, rest = c.wire.AppendFrames(c.buf[:0], rest, MaxBurst)
		if len(rest) == 0 {
			break
		}
		if len(b) > 0 && c.write(b, c.opt.WriteTimeout) != nil {
			return
		}
	}
	b = c.wire.AppendClose(b, cause, code, reason)
	if err := c.write(b, timeout); err == nil {
		if c.opt.CloseSent != nil {
			c.opt.CloseSent(code)
		}
		c.log().Debug("stream closed", "code", code, "reason", cause.Label())
	}
}

// write writes b and flushes it, within timeout.
func (c *Conn) write(b []byte, timeout time.Duration) error {
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
