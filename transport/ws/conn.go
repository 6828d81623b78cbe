package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
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
	srv        *Server
	nc         net.Conn
	br         *bufio.Reader
	sess       *broker.Session
	id         string
	remote     string
	canPublish bool
	ctx        context.Context
	cancel     context.CancelFunc

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
	return &conn{
		srv:        s,
		nc:         nc,
		br:         br,
		sess:       s.b.NewSession(),
		id:         newSessionID(),
		remote:     remote,
		canPublish: isLoopback(remote),
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
	c.srv.log.Debug("session open", "session", c.id, "remote", c.remote)
	go c.writeLoop()
	c.readLoop()
	close(c.readerDone)
	c.requestClose(0, "", closeCut)
	<-c.writerDone
	c.cancel()
	c.sess.Close()
	_ = c.nc.Close()
	c.mu.Lock()
	code, reason := c.closeCode, c.closeReason
	c.mu.Unlock()
	c.srv.log.Debug("session closed", "session", c.id, "remote", c.remote, "code", int(code), "reason", reason)
}

// shutdownNow ends a session that was never registered.
func (c *conn) shutdownNow() {
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
			frames, overflowed := out.Drain(spare)
			if overflowed {
				c.requestClose(ws.StatusPolicyViolation, "slow consumer", closeSlow)
				c.finish()
				return
			}
			if err := c.write(frames); err != nil {
				_ = c.nc.Close()
				return
			}
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
	_, err := nb.WriteTo(c.nc)
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
		c.srv.log.Info("slow consumer", "session", c.id, "remote", c.remote)
	}
	if mode == closeGraceful {
		c.sess.Close()
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
			c.srv.log.Error("session fault", "session", c.id, "panic", fmt.Sprint(r))
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
		c.srv.log.Debug("connection dropped", "session", c.id, "remote", c.remote, "err", err)
	}
	c.requestClose(0, "", closeCut)
}

// control handles a ping, pong or close frame. It reports whether the
// reader is done.
func (c *conn) control(op ws.OpCode, p []byte) bool {
	switch op {
	case ws.OpPing:
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
	if err != nil {
		c.sendError(cmd.Ref, broker.CodeBadRequest, err)
		return false
	}
	switch cmd.Op {
	case "ping":
		c.sess.Send(jsonFrame(pongFrame{Type: "pong", Ref: cmd.Ref}))
	case "subscribe":
		if err := c.sess.Subscribe(c.ctx, cmd.Ref, cmd.Topic, cmd.Since); err != nil {
			c.sendError(cmd.Ref, broker.ErrorCode(err), err)
		}
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
	if !c.canPublish {
		c.sendError(cmd.Ref, broker.CodeForbidden, errors.New("publishing needs a loopback connection or a token that allows it"))
		return
	}
	if !c.srv.beginPublish() {
		c.sendError(cmd.Ref, broker.CodeUnavailable, errors.New("server shutting down"))
		return
	}
	defer c.srv.publishing.Done()
	msgs, err := c.srv.b.Publish(c.ctx, []broker.Publication{{Topic: cmd.Topic, Data: cmd.Data}})
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
