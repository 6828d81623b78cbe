package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/session"
)

// closeMode says how a session ends: the close handshake its cause needs.
type closeMode int

const (
	// closeFail sends the close frame now and waits briefly for the reply
	// (protocol violations and other errors).
	closeFail closeMode = iota
	// closeGraceful flushes the queue, sends the close frame and waits for
	// the peer's reply (shutdown).
	closeGraceful
	// closeEcho answers a peer's close frame and ends the connection.
	closeEcho
	// closeSlow sends the close frame best effort and cuts the connection
	// (slow consumer: the socket may be full).
	closeSlow
	// closeCut ends the connection with no close frame (the peer is gone).
	closeCut
)

// modeOf is the close handshake of a session ending for cause.
func modeOf(cause session.Cause) closeMode {
	switch cause {
	case session.CauseClient:
		return closeEcho
	case session.CauseDropped, session.CauseTimeout:
		return closeCut
	case session.CauseShutdown:
		return closeGraceful
	case session.CauseSlowConsumer:
		return closeSlow
	}
	return closeFail
}

// requestClose asks the writer to end the session for cause; reason, when
// not empty, replaces the cause's own on the wire (a protocol error's
// detail, the reason of a client's close echoed). The first request wins.
func (c *conn) requestClose(cause session.Cause, reason string) {
	c.requestCloseCode(cause, 0, reason)
}

// requestCloseCode is requestClose with code, when not 0, in place of the
// cause's own (the server API's disconnect).
func (c *conn) requestCloseCode(cause session.Cause, code ws.StatusCode, reason string) {
	c.mu.Lock()
	if c.closeRequested.Load() {
		c.mu.Unlock()
		return
	}
	c.closeCause, c.closeReason, c.closeCode = cause, reason, code
	c.closeRequested.Store(true)
	c.mu.Unlock()
	c.wake()
}

func (c *conn) closing() bool { return c.closeRequested.Load() }

// closeState returns the requested close: its cause and the close frame's
// code and reason.
func (c *conn) closeState() (session.Cause, ws.StatusCode, string) {
	c.mu.Lock()
	cause, reason, code := c.closeCause, c.closeReason, c.closeCode
	c.mu.Unlock()
	if code == 0 {
		code = ws.StatusCode(cause.Code())
	}
	if cause == session.CauseClient {
		// Echo the client's code; a close frame without one is answered
		// with 1000.
		code = c.peerCode
		if code == ws.StatusNoStatusRcvd {
			code = ws.StatusNormalClosure
		}
	}
	if reason == "" && cause != session.CauseClient {
		reason = cause.Reason()
	}
	return cause, code, reason
}

// finish carries out the requested close: at most one close frame, then
// the TCP connection is closed.
func (c *conn) finish() {
	cause, code, reason := c.closeState()
	mode := modeOf(cause)
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

// fail closes the session for a violation (detail, when not empty, is the
// close frame's reason); the reader stops interpreting the stream and
// only waits for the peer to go away.
func (c *conn) fail(cause session.Cause, detail string) {
	c.requestClose(cause, detail)
	c.discardInput()
}

// discardInput reads and drops what the peer still sends, for a bounded
// time, once the session is closing: the close frame's reply ends it.
func (c *conn) discardInput() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.CloseTimeout))
	_, _ = io.Copy(io.Discard, c.nc)
}

// readerEnded ends the reader's part.
func (c *conn) readerEnded() {
	close(c.readerDone)
	c.requestClose(session.CauseDropped, "")
	c.partEnded()
}

// endParked closes the connection and ends the reader if it is parked:
// no event will come for it. An active reader ends by itself on the
// closed connection. err, when not nil, is why the stream broke, as a
// read would have found it.
func (c *conn) endParked(err error) {
	if !c.reader.endParked() {
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

// silent cuts a parked session that has sent nothing for two heartbeat
// intervals, as a read deadline cuts one with a reader goroutine.
func (c *conn) silent() { c.endParked(os.ErrDeadlineExceeded) }

// readFailed ends a session whose stream broke without a close frame:
// the peer dropped it, or was silent past its read deadline.
func (c *conn) readFailed(err error) {
	if !c.closing() {
		c.srv.stats.count(&c.srv.stats.received, ws.StatusAbnormalClosure)
		c.logger().Debug("connection dropped", "err", err)
	}
	cause := session.CauseDropped
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		cause = session.CauseTimeout
	}
	c.requestClose(cause, "")
}

// peerClosed handles the peer's close frame: the session ends by the
// client's will, with its code, answered with an echo. It reports whether
// the reader is done (always).
func (c *conn) peerClosed(p []byte) bool {
	code, reason, err := parseClose(p)
	if err != nil {
		if errors.Is(err, ws.ErrProtocolInvalidUTF8) {
			c.fail(session.CauseInvalidPayload, "invalid UTF-8 in close reason")
		} else {
			c.fail(session.CauseProtocolError, err.Error())
		}
		return true
	}
	c.srv.stats.count(&c.srv.stats.received, code)
	c.peerCode = code
	// A reply to our own close ends the handshake; otherwise echo.
	c.requestClose(session.CauseClient, reason)
	return true
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
