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
	"slices"
	"strings"
	"sync"
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

// maxIdleBuffer is the largest read buffer a session keeps between
// messages; a larger one is dropped so idle sessions stay small.
const maxIdleBuffer = 4096

// conn is one WebSocket session: a reader (the handler goroutine) and a
// writer goroutine, joined by the broker session's outbox and the close
// state below. At most one close frame is ever sent.
type conn struct {
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	sess   *broker.Session
	id     string
	remote string
	ctx    context.Context
	cancel context.CancelFunc

	// The reader goroutine alone uses these after the session starts.
	client  netip.Addr         // the client's address (X-Forwarded-For from trusted proxies)
	subject string             // the token's sub; "" for anonymous sessions
	perms   broker.Permissions // what the session may subscribe and publish to
	expiry  *time.Timer        // closes the session at its token's expiry; nil without a token
	ops     *rate.Limiter      // commands and pings per second; nil: no limit
	strikes *rate.Limiter      // allowance of commands refused by ops

	// Set before the session starts, then read-only.
	log     *slog.Logger      // session events: session, node, remote, trace_id
	link    trace.SpanContext // the upgrade request's trace, when it had one
	pubCtx  context.Context   // ctx marked as publishing through the WebSocket API
	started time.Time
	// The reader goroutine alone sets these; run reads them after it.
	peerCode ws.StatusCode // the code of the peer's close frame
	readErr  error         // why the stream broke, for a dropped session

	// mu guards closeRequested, closeCode, closeReason and mode.
	mu             sync.Mutex
	closeRequested bool
	closeCode      ws.StatusCode
	closeReason    string
	mode           closeMode

	closeCh    chan struct{} // closed when a close is requested
	readerDone chan struct{} // closed when the reader stops
	writerDone chan struct{} // closed when the writer stops
}

func (s *Server) newConn(nc net.Conn, br *bufio.Reader, remote string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	ops, strikes := s.newOpLimits()
	return &conn{
		srv:        s,
		nc:         nc,
		br:         br,
		sess:       s.b.NewSession(),
		id:         newSessionID(),
		remote:     remote,
		ops:        ops,
		strikes:    strikes,
		ctx:        ctx,
		cancel:     cancel,
		closeCh:    make(chan struct{}),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

// run sends the welcome frame, starts the writer and reads until the
// session ends, then releases everything the session holds.
func (c *conn) run() {
	c.sess.Send(jsonFrame(welcomeFrame{
		Type:      "welcome",
		Session:   c.id,
		Node:      c.srv.cfg.NodeID,
		Heartbeat: c.srv.cfg.Heartbeat.Seconds(),
	}))
	c.startTelemetry()
	c.log.Debug("session open", "client", c.client.String(), "sub", c.subject)
	go c.writeLoop()
	c.readLoop()
	close(c.readerDone)
	c.requestClose(0, "", closeCut)
	<-c.writerDone
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.cancel()
	c.sess.Close()
	_ = c.nc.Close()
	c.ended()
}

// shutdownNow ends a session that was never registered.
func (c *conn) shutdownNow() {
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.sess.Send(closeFrame(ws.StatusGoingAway, "server shutting down"))
	c.sess.Close()
	frames, _ := c.sess.Outbox().Drain(nil)
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	nb := net.Buffers(frames)
	_, _ = nb.WriteTo(c.nc)
	c.srv.stats.count(&c.srv.stats.sent, ws.StatusGoingAway)
	c.cancel()
	_ = c.nc.Close()
}

// requestClose asks the writer to end the session. The first request wins.
func (c *conn) requestClose(code ws.StatusCode, reason string, mode closeMode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeRequested {
		return
	}
	c.closeRequested = true
	c.closeCode, c.closeReason, c.mode = code, reason, mode
	close(c.closeCh)
}

func (c *conn) closing() bool {
	select {
	case <-c.closeCh:
		return true
	default:
		return false
	}
}

// writeLoop drains the outbox in batches, one writev each, sends pings,
// and performs the close.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.srv.cfg.Heartbeat)
	defer ping.Stop()
	out := c.sess.Outbox()
	// The welcome is queued before the writer starts: write it before
	// anything else, a close frame included. (An overflow stays marked in
	// the outbox and is handled in the loop.)
	spare, _ := out.Drain(nil)
	if err := c.write(spare); err != nil {
		_ = c.nc.Close()
		return
	}
	for {
		select {
		case <-out.Ready():
			frames, oldest, overflowed := out.DrainOldest(spare)
			if overflowed {
				c.requestClose(ws.StatusPolicyViolation, "slow consumer", closeSlow)
				c.finish()
				return
			}
			if err := c.write(frames); err != nil {
				if out.Overflowed() {
					// The queue overflowed while the socket was full: a
					// slow consumer, whose close frame cannot be sent.
					c.requestClose(ws.StatusPolicyViolation, "slow consumer", closeSlow)
					c.log.Warn("slow consumer", "err", err)
				}
				_ = c.nc.Close()
				return
			}
			c.srv.tel.written(c.ctx, len(frames), oldest)
			spare = frames
		case <-ping.C:
			if err := c.write([][]byte{ws.CompiledPing}); err != nil {
				_ = c.nc.Close()
				return
			}
		case <-c.closeCh:
			c.finish()
			return
		}
	}
}

// write sends frames with one writev under the write timeout.
func (c *conn) write(frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	nb := net.Buffers(frames)
	n, err := nb.WriteTo(c.nc)
	c.srv.tel.bytesOut.Add(uint64(n))
	return err
}

// finish carries out the requested close: at most one close frame, then
// the TCP connection is closed.
func (c *conn) finish() {
	c.mu.Lock()
	code, reason, mode := c.closeCode, c.closeReason, c.mode
	c.mu.Unlock()
	if mode == closeCut {
		_ = c.nc.Close()
		return
	}
	if mode == closeSlow {
		c.log.Warn("slow consumer")
	}
	if mode == closeGraceful {
		c.sess.Close()
	}
	if mode == closeGraceful || mode == closeEcho || mode == closeFail {
		// What was answered before the close goes out before the close
		// frame: the writer's select may see the close request before
		// the frames queued ahead of it.
		frames, _ := c.sess.Outbox().Drain(nil)
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

// fail closes the session for a violation: the reader stops interpreting
// the stream and only waits for the peer to go away.
func (c *conn) fail(code ws.StatusCode, reason string) {
	c.requestClose(code, reason, closeFail)
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.CloseTimeout))
	_, _ = io.Copy(io.Discard, c.br)
}

// readLoop reads frames until the session ends. It returns after the
// peer's close frame, a violation, or a read error.
func (c *conn) readLoop() {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("session fault", "panic", fmt.Sprint(r))
			c.fail(ws.StatusInternalServerError, "internal error")
		}
	}()
	var (
		state ws.State = ws.StateServerSide
		msg   []byte
		ctl   [ws.MaxControlFramePayloadSize]byte
		max   = int64(c.srv.cfg.MaxMessageSize)
	)
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(2 * c.srv.cfg.Heartbeat))
		h, err := ws.ReadHeader(c.br)
		if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
			c.fail(ws.StatusProtocolError, err.Error())
			return
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		c.srv.tel.bytesIn.Add(uint64(ws.HeaderSize(h)) + uint64(h.Length))
		if err := ws.CheckHeader(h, state); err != nil {
			c.fail(ws.StatusProtocolError, err.Error())
			return
		}
		if h.OpCode.IsControl() {
			p := ctl[:h.Length]
			if _, err := io.ReadFull(c.br, p); err != nil {
				c.readFailed(err)
				return
			}
			ws.Cipher(p, h.Mask, 0)
			if done := c.control(h.OpCode, p); done {
				return
			}
			continue
		}
		if h.OpCode == ws.OpBinary {
			c.fail(ws.StatusUnsupportedData, "binary frames are not supported")
			return
		}
		if h.OpCode == ws.OpText {
			msg = msg[:0]
		}
		if h.Length > max-int64(len(msg)) {
			c.fail(ws.StatusMessageTooBig, "message too big")
			return
		}
		n := len(msg)
		msg = slices.Grow(msg, int(h.Length))[:n+int(h.Length)]
		if _, err := io.ReadFull(c.br, msg[n:]); err != nil {
			c.readFailed(err)
			return
		}
		ws.Cipher(msg[n:], h.Mask, 0)
		if !h.Fin {
			state = state.Set(ws.StateFragmented)
			continue
		}
		state = state.Clear(ws.StateFragmented)
		if !utf8.Valid(msg) {
			c.fail(ws.StatusInvalidFramePayloadData, "invalid UTF-8")
			return
		}
		if !c.closing() {
			if done := c.handle(msg); done {
				return
			}
		}
		if cap(msg) > maxIdleBuffer {
			msg = nil
		}
	}
}

// readFailed ends a session whose stream broke without a close frame.
func (c *conn) readFailed(err error) {
	if !c.closing() {
		c.srv.stats.count(&c.srv.stats.received, ws.StatusAbnormalClosure)
		c.readErr = err
		c.log.Debug("connection dropped", "err", err)
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
	if !c.srv.beginPublish() {
		c.sendError(cmd.Ref, broker.CodeUnavailable, errors.New("server shutting down"))
		return
	}
	defer c.srv.publishing.Done()
	ctx, end := c.startPublish(cmd.Topic)
	msgs, err := c.srv.b.Publish(ctx, []broker.Publication{{Topic: cmd.Topic, Data: cmd.Data}})
	end(msgs, err)
	if err != nil {
		c.sendError(cmd.Ref, broker.ErrorCode(err), err)
		return
	}
	m := msgs[0]
	c.sess.Send(jsonFrame(publishedFrame{Type: "published", Ref: cmd.Ref, ID: m.ID, Offset: m.Offset, Epoch: m.Epoch}))
}

// sendError queues an `error` frame; the message drops the package prefix.
func (c *conn) sendError(ref, code string, err error) {
	msg := err.Error()
	for _, prefix := range []string{"ws: ", "broker: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	c.sess.Send(jsonFrame(errorFrame{Type: "error", Ref: ref, Code: code, Message: msg}))
}
