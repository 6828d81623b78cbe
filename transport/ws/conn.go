package ws

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/session"
	"go.opentelemetry.io/otel/trace"
)

// maxMessageBuffer is the largest message buffer a reader reuses for the
// next message.
const maxMessageBuffer = 4096

// conn is one WebSocket session. It has no goroutine of its own while it
// is idle: a reader runs while its socket has bytes to read (started by
// the event loop, or for the whole session when the socket is not
// polled), and a writer runs while its outbox has frames or a close is
// under way. The two are joined by the broker session's outbox and the
// close state below. At most one close frame is ever sent; whichever of
// reader and writer ends last releases the session.
type conn struct {
	srv    *Server
	nc     net.Conn
	raw    syscall.RawConn // nc's descriptor; nil when nc has none (TLS)
	rawW   rawWriter       // writes to raw without waiting
	sess   *broker.Session
	id     string
	remote string
	ctx    context.Context
	cancel context.CancelFunc

	// Set before the session starts, then read-only.
	loop      *eventLoop        // the server's event loop when the session began
	pollID    uint64            // the session's id in loop
	polled    bool              // whether loop watches the socket
	admission func()            // gives back the session's admission
	link      trace.SpanContext // the upgrade request's trace, when it had one
	started   time.Time
	// session runs the client's commands; set before the session starts.
	session *session.Session

	// The reader alone uses these after the session starts (one reader
	// runs at a time: a new one starts only from parked).
	wsState ws.State      // fragmentation state between frames
	msg     []byte        // a message being reassembled (fragments, or a frame split across reads)
	part    *partialFrame // a frame split across reads; nil between frames
	client  netip.Addr    // the client's address (forwarded by trusted proxies)
	// flate is the inflate state when the session negotiated
	// permessage-deflate (set before it starts), else nil.
	flate *inflater
	// The reader sets this, or the event loop once the reader is done;
	// the release reads it after both.
	peerCode ws.StatusCode // the code of the peer's close frame

	reader   readerState
	lastRead atomic.Int64 // when the reader last had bytes (Unix ns)
	lastPing time.Time    // when the loop last queued a ping; the loop alone uses it

	// writer runs while the outbox has frames or a close is under way
	// (once it ends the session, for good).
	writer writerState
	spare  [][]byte // the writer's frame slice between bursts
	// carry is what is left of the batch a pooled writer is writing, in
	// turns of at most maxTurnBytes; batch and oldest describe that
	// batch for the delivery metrics. The running writer alone uses them.
	carry  [][]byte
	batch  int
	oldest time.Time
	// parts counts the reader and writer not yet ended.
	parts atomic.Int32

	// log carries session events, with session, node, remote and
	// trace_id; made on first use by logger, as most sessions log only
	// when they end.
	logOnce sync.Once
	log     *slog.Logger

	// mu guards closeCause and closeReason, and closeRequested's change
	// to true.
	mu             sync.Mutex
	closeRequested atomic.Bool
	closeCause     session.Cause
	closeReason    string        // the reason to send when not the cause's own
	closeCode      ws.StatusCode // the code to send when not the cause's own

	readerDone chan struct{} // closed when the reader ends
}

// newConn returns the session of nc, its welcome queued (naming user, the
// token's sub, when there is one). fl is its inflate state when it
// negotiated permessage-deflate, else nil: its frames are then encoded
// with the server's DeflateEncoder.
func (s *Server) newConn(nc net.Conn, remote, user string, fl *inflater) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:        s,
		nc:         nc,
		id:         newSessionID(),
		remote:     remote,
		ctx:        ctx,
		cancel:     cancel,
		wsState:    ws.StateServerSide,
		readerDone: make(chan struct{}),
	}
	if fl != nil && s.compression != nil {
		c.flate = fl
		c.wsState = c.wsState.Set(ws.StateExtended)
		c.sess = s.b.NewSessionEncoded(s.compression.encoding)
	} else {
		c.sess = s.b.NewSession()
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.rawW.init()
		}
	}
	c.parts.Store(2)
	// No event may start a reader before start decides how to read.
	c.reader.begin()
	// The welcome is the first frame, ahead of any ping.
	c.sess.Send(c.replyFrame(session.Welcome{
		Type:      "welcome",
		Session:   c.id,
		Node:      s.cfg.NodeID,
		Heartbeat: s.cfg.Heartbeat.Seconds(),
		User:      user,
	}))
	return c
}

// start starts the registered session: the writer for the welcome frame
// (queued by newConn), and the reader on buffered (the bytes that came
// with the upgrade request) when it holds any or the socket is not
// polled, else parked on the event loop. It returns at once; the session
// releases itself when it ends.
func (c *conn) start(buffered *bufio.Reader, pollErr error) {
	c.startTelemetry()
	if c.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		c.logger().Debug("session open", "client", c.client.String(), "sub", c.session.Subject())
		if pollErr != nil {
			c.logger().Debug("not polled: a reader goroutine for the session", "err", pollErr)
		}
	}
	c.sess.Outbox().Notify(c.wake)
	c.wake()
	switch {
	case !c.polled:
		go c.readAll(buffered)
	case buffered.Buffered() > 0:
		// Read what came with the request before waiting on the socket,
		// which is armed only when the reader parks.
		go c.readActive(buffered)
	default:
		c.park()
	}
}

// shutdownNow ends a session that was never registered.
func (c *conn) shutdownNow() {
	c.session.End()
	c.sess.Outbox().Drain(nil) // the welcome
	cause := session.CauseShutdown
	c.sess.Send(closeFrame(ws.StatusCode(cause.Code()), cause.Reason()))
	c.sess.Close()
	frames, _ := c.sess.Outbox().Drain(nil)
	_ = c.writeWaiting(frames)
	c.srv.stats.count(&c.srv.stats.sent, ws.StatusCode(cause.Code()))
	c.cancel()
	_ = c.nc.Close()
}

// partEnded counts the reader or the writer ended; the last one releases
// the session.
func (c *conn) partEnded() {
	if c.parts.Add(-1) == 0 {
		c.srv.endSession(c)
	}
}

// releaseSession frees what the session holds once its reader and writer
// have ended.
func (c *conn) releaseSession() {
	if c.session != nil {
		c.session.End()
	}
	c.cancel()
	c.sess.Close()
	_ = c.nc.Close()
	if c.flate != nil {
		c.srv.compression.windows.Add(-int64(c.flate.release()))
	}
	c.ended()
}

// Reply queues a reply of the session (session.Transport).
func (c *conn) Reply(reply any) { c.sess.Send(c.replyFrame(reply)) }

// Close ends the session for cause (session.Transport). The reader, when
// the session closes it, reads no more (see handle).
func (c *conn) Close(cause session.Cause) { c.requestClose(cause, "") }

// Disconnect ends the session for the server API with code and reason
// (session.Transport).
func (c *conn) Disconnect(code uint16, reason string) {
	c.requestCloseCode(session.CauseDisconnected, ws.StatusCode(code), reason)
}

// handle runs one client message. It reports whether the reader is done.
func (c *conn) handle(p []byte) bool {
	if c.session.Handle(p) {
		c.discardInput()
		return true
	}
	return false
}
