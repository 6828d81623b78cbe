package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// closeMode says how a session ends.
type closeMode int

const (
	// closeGraceful flushes the queue, sends the close frame and waits for
	// the peer's reply (shutdown).
	closeGraceful closeMode = iota + 1
	// closeFail sends the close frame now and waits briefly for the reply
	// (protocol violations and other errors).
	closeFail
	// closeEcho answers a peer's close frame and ends the connection.
	closeEcho
	// closeSlow sends the close frame best effort and cuts the connection
	// (slow consumer: the socket may be full).
	closeSlow
	// closeCut ends the connection with no close frame (the peer is gone).
	closeCut
)

// The reader's states. A polled session's reader is parked while its
// socket is quiet (no goroutine: the event loop watches the socket) and
// active while a goroutine reads what arrived; done is final.
const (
	readerParked int32 = iota
	readerActive
	readerDone
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
	pubCtx    context.Context   // ctx marked as publishing through the WebSocket API
	started   time.Time

	// The reader alone uses these after the session starts (one reader
	// runs at a time: a new one starts only from parked).
	wsState ws.State           // fragmentation state between frames
	msg     []byte             // a message being reassembled (fragments, or a frame split across reads)
	part    *partialFrame      // a frame split across reads; nil between frames
	client  netip.Addr         // the client's address (X-Forwarded-For from trusted proxies)
	subject string             // the token's sub; "" for anonymous sessions
	perms   broker.Permissions // what the session may subscribe and publish to
	expiry  *time.Timer        // closes the session at its token's expiry; nil without a token
	ops     *rate.Limiter      // commands and pings per second; nil: no limit
	strikes *rate.Limiter      // allowance of commands refused by ops
	// The reader sets these, or the event loop once the reader is done;
	// the release reads them after both.
	peerCode ws.StatusCode // the code of the peer's close frame
	readErr  error         // why the stream broke, for a dropped session

	rstate   atomic.Int32 // readerParked, readerActive or readerDone
	lastRead atomic.Int64 // when the reader last had bytes (Unix ns)
	lastPing time.Time    // when the loop last queued a ping; the loop alone uses it

	// writing is true while a writer runs (or, once it ends the session,
	// for good).
	writing atomic.Bool
	spare   [][]byte // the writer's frame slice between bursts
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

	// mu guards closeCode, closeReason and mode, and closeRequested's
	// change to true.
	mu             sync.Mutex
	closeRequested atomic.Bool
	closeCode      ws.StatusCode
	closeReason    string
	mode           closeMode

	readerDone chan struct{} // closed when the reader ends
}

func (s *Server) newConn(nc net.Conn, remote string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	ops, strikes := s.newOpLimits()
	c := &conn{
		srv:        s,
		nc:         nc,
		sess:       s.b.NewSession(),
		id:         newSessionID(),
		remote:     remote,
		ops:        ops,
		strikes:    strikes,
		ctx:        ctx,
		cancel:     cancel,
		wsState:    ws.StateServerSide,
		readerDone: make(chan struct{}),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.rawW.init()
		}
	}
	c.parts.Store(2)
	// No event may start a reader before start decides how to read.
	c.rstate.Store(readerActive)
	// The welcome is the first frame, ahead of any ping.
	c.sess.Send(jsonFrame(welcomeFrame{
		Type:      "welcome",
		Session:   c.id,
		Node:      s.cfg.NodeID,
		Heartbeat: s.cfg.Heartbeat.Seconds(),
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
		c.logger().Debug("session open", "client", c.client.String(), "sub", c.subject)
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
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.sess.Outbox().Drain(nil) // the welcome
	c.sess.Send(closeFrame(ws.StatusGoingAway, "server shutting down"))
	c.sess.Close()
	frames, _ := c.sess.Outbox().Drain(nil)
	_ = c.writeWaiting(frames)
	c.srv.stats.count(&c.srv.stats.sent, ws.StatusGoingAway)
	c.cancel()
	_ = c.nc.Close()
}

// requestClose asks the writer to end the session. The first request wins.
func (c *conn) requestClose(code ws.StatusCode, reason string, mode closeMode) {
	c.mu.Lock()
	if c.closeRequested.Load() {
		c.mu.Unlock()
		return
	}
	c.closeCode, c.closeReason, c.mode = code, reason, mode
	c.closeRequested.Store(true)
	c.mu.Unlock()
	c.wake()
}

func (c *conn) closing() bool { return c.closeRequested.Load() }

// partEnded counts the reader or the writer ended; the last one releases
// the session.
func (c *conn) partEnded() {
	if c.parts.Add(-1) == 0 {
		c.srv.endSession(c)
	}
}

// readerEnded ends the reader's part.
func (c *conn) readerEnded() {
	close(c.readerDone)
	c.requestClose(0, "", closeCut)
	c.partEnded()
}

// endParked closes the connection and ends the reader if it is parked:
// no event will come for it. An active reader ends by itself on the
// closed connection. err, when not nil, is why the stream broke, as a
// read would have found it.
func (c *conn) endParked(err error) {
	if !c.rstate.CompareAndSwap(readerParked, readerDone) {
		return
	}
	if err != nil {
		c.readFailed(err)
	}
	_ = c.nc.Close()
	c.readerEnded()
}

// cut closes the connection and ends a parked reader.
func (c *conn) cut() {
	_ = c.nc.Close()
	c.endParked(nil)
}

// park leaves the reader to the event loop until the socket has bytes.
func (c *conn) park() {
	c.rstate.Store(readerParked)
	if err := c.loop.poll.rearm(c.raw, c.pollID); err != nil {
		// The connection was closed meanwhile: no event will come.
		c.endParked(nil)
	}
}

// finish carries out the requested close: at most one close frame, then
// the TCP connection is closed.
func (c *conn) finish() {
	c.mu.Lock()
	code, reason, mode := c.closeCode, c.closeReason, c.mode
	c.mu.Unlock()
	carry := c.carry // the rest of a batch that a pooled writer began
	c.carry = nil
	if mode == closeCut {
		_ = c.nc.Close()
		return
	}
	if mode == closeSlow {
		c.logger().Warn("slow consumer")
	}
	if mode == closeGraceful {
		c.sess.Close()
	}
	if mode == closeGraceful || mode == closeEcho || mode == closeFail {
		// What was queued before the close (the rest of a batch begun
		// first) goes out before the close frame.
		frames, _ := c.sess.Outbox().Drain(nil)
		frames = append(carry, frames...)
		if err := c.write(frames); err != nil {
			_ = c.nc.Close()
			return
		}
	}
	timeout := c.srv.cfg.WriteTimeout
	if mode == closeSlow {
		timeout = time.Second
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.nc.Write(closeFrame(code, reason)); err == nil {
		c.srv.stats.count(&c.srv.stats.sent, code)
	}
	if mode == closeEcho || mode == closeSlow {
		_ = c.nc.Close()
		return
	}
	// Half-close so the close frame is not lost to a reset, then wait for
	// the peer's reply (or its EOF) for a bounded time.
	if hc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	t := time.NewTimer(c.srv.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case <-c.readerDone:
	case <-t.C:
	}
	_ = c.nc.Close()
}

// releaseSession frees what the session holds once its reader and writer
// have ended.
func (c *conn) releaseSession() {
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.cancel()
	c.sess.Close()
	_ = c.nc.Close()
	c.ended()
}

// fail closes the session for a violation: the reader stops interpreting
// the stream and only waits for the peer to go away.
func (c *conn) fail(code ws.StatusCode, reason string) {
	c.requestClose(code, reason, closeFail)
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.CloseTimeout))
	_, _ = io.Copy(io.Discard, c.nc)
}

// silent cuts a parked session that has sent nothing for two heartbeat
// intervals, as a read deadline cuts one with a reader goroutine.
func (c *conn) silent() { c.endParked(os.ErrDeadlineExceeded) }

// readFailed ends a session whose stream broke without a close frame.
func (c *conn) readFailed(err error) {
	if !c.closing() {
		c.srv.stats.count(&c.srv.stats.received, ws.StatusAbnormalClosure)
		c.readErr = err
		c.logger().Debug("connection dropped", "err", err)
	}
	c.requestClose(0, "", closeCut)
}

// control handles a ping, pong or close frame. It reports whether the
// reader is done.
func (c *conn) control(op ws.OpCode, p []byte) bool {
	switch op {
	case ws.OpPing:
		if ok, abuse := c.allowOp(); !ok {
			// Over the rate a ping is not answered; abuse closes.
			return abuse && c.opRefused("", abuse)
		}
		c.sess.Send(ws.MustCompileFrame(ws.NewPongFrame(slices.Clone(p))))
	case ws.OpClose:
		code, reason, err := parseClose(p)
		if err != nil {
			if errors.Is(err, ws.ErrProtocolInvalidUTF8) {
				c.fail(ws.StatusInvalidFramePayloadData, "invalid UTF-8 in close reason")
			} else {
				c.fail(ws.StatusProtocolError, err.Error())
			}
			return true
		}
		c.srv.stats.count(&c.srv.stats.received, code)
		c.peerCode = code
		echo := code
		if code == ws.StatusNoStatusRcvd {
			echo = ws.StatusNormalClosure
		}
		// A reply to our own close ends the handshake; otherwise echo.
		c.requestClose(echo, reason, closeEcho)
		return true
	}
	return false
}

// parseClose reads a close frame's payload. An empty payload is 1005 (no
// status); a one-byte payload, an invalid code or a reason that is not
// UTF-8 is an error.
func parseClose(p []byte) (ws.StatusCode, string, error) {
	switch len(p) {
	case 0:
		return ws.StatusNoStatusRcvd, "", nil
	case 1:
		return 0, "", errors.New("close frame payload of one byte")
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", fmt.Errorf("invalid close code %d", code)
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", ws.ErrProtocolInvalidUTF8
	}
	return code, string(p[2:]), nil
}

// validCloseCode reports whether a peer may send code: 1000–1003,
// 1007–1014 and 3000–4999.
func validCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// handle runs one command. It reports whether the reader is done.
func (c *conn) handle(p []byte) bool {
	cmd, err := DecodeCommand(p)
	if errors.Is(err, ErrNotObject) {
		c.fail(ws.StatusInvalidFramePayloadData, "frame is not a JSON object")
		return true
	}
	if ok, abuse := c.allowOp(); !ok {
		return c.opRefused(cmd.Ref, abuse)
	}
	if err != nil {
		c.sendError(cmd.Ref, broker.CodeBadRequest, err)
		return false
	}
	switch cmd.Op {
	case "ping":
		c.sess.Send(jsonFrame(pongFrame{Type: "pong", Ref: cmd.Ref}))
	case "subscribe":
		if err := c.sess.Subscribe(c.ctx, cmd.Ref, cmd.Topic, cmd.Since); err != nil {
			if errors.Is(err, broker.ErrUnavailable) {
				c.srv.log.Warn("subscribe failed", "session", c.id, "err", err)
			}
			c.countRefusal(err)
			c.sendError(cmd.Ref, broker.ErrorCode(err), err)
		}
	case "refresh":
		c.refresh(cmd)
	case "unsubscribe":
		if _, err := broker.ValidatePattern(cmd.Topic); err != nil {
			c.sendError(cmd.Ref, broker.ErrorCode(err), err)
			return false
		}
		if err := c.sess.Unsubscribe(cmd.Topic); err != nil {
			c.sendError(cmd.Ref, broker.ErrorCode(err), err)
			return false
		}
		c.sess.Send(jsonFrame(unsubscribedFrame{Type: "unsubscribed", Ref: cmd.Ref, Topic: cmd.Topic}))
	case "publish":
		c.publish(cmd)
	}
	return false
}

// publish runs a publish op for a session allowed to publish.
func (c *conn) publish(cmd Command) {
	if err := broker.CheckPublish(c.perms, []broker.Publication{{Topic: cmd.Topic, Data: cmd.Data}}); err != nil {
		if errors.Is(err, broker.ErrForbidden) && c.srv.cfg.Tokens == nil {
			err = codedError{err, "publishing needs a loopback connection or a token that allows it"}
		}
		c.countRefusal(err)
		c.sendError(cmd.Ref, broker.ErrorCode(err), err)
		return
	}
	if !c.srv.publishes.Enter() {
		c.sendError(cmd.Ref, broker.CodeUnavailable, errors.New("server shutting down"))
		return
	}
	defer c.srv.publishes.Leave()
	ctx, end := c.startPublish(cmd.Topic)
	msgs, err := c.srv.b.Publish(ctx, []broker.Publication{{Topic: cmd.Topic, Data: cmd.Data, IdempotencyKey: cmd.IdempotencyKey}})
	end(msgs, err)
	if err != nil {
		if code := broker.ErrorCode(err); code == broker.CodeUnavailable || code == broker.CodeInternal {
			c.srv.log.Warn("publish failed", "session", c.id, "err", err)
		}
		c.sendError(cmd.Ref, broker.ErrorCode(err), err)
		return
	}
	m := msgs[0]
	c.sess.Send(jsonFrame(publishedFrame{Type: "published", Ref: cmd.Ref, ID: m.ID, Offset: m.Offset, Epoch: m.Epoch}))
}

// sendError queues an `error` frame. Store failures get a fixed message
// (broker.ClientMessage); others drop the package prefix.
func (c *conn) sendError(ref, code string, err error) {
	msg := strings.TrimPrefix(broker.ClientMessage(err), "ws: ")
	c.sess.Send(jsonFrame(errorFrame{Type: "error", Ref: ref, Code: code, Message: msg}))
}
