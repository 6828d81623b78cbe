package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/wsframe"
	"github.com/tidings-io/tidings/protocol"
)

const (
	// maxMessage bounds a message the client reads (fragments joined).
	maxMessage = 64 << 20
	// dialTimeout bounds the connect and the upgrade.
	dialTimeout = 10 * time.Second
	// frameTimeout bounds the rest of a frame once its first byte came.
	frameTimeout = 30 * time.Second
	// writeTimeout bounds each write.
	writeTimeout = 10 * time.Second
	// closeWait bounds the write of the client's close frame.
	closeWait = time.Second
)

// errIdle is what readMessage returns when no frame began within its
// idle bound; the connection is still usable.
var errIdle = errors.New("no frame within the idle time")

// conn is one WebSocket connection. Reads are for one goroutine; writes
// may come from any.
type conn struct {
	nc net.Conn
	br *bufio.Reader

	wmu     sync.Mutex // guards bw and closing
	bw      *bufio.Writer
	closing bool // the client's close frame was written (or the conn closed)

	// stopWatch stops closing the connection when the subscription ends.
	stopWatch func() bool
}

// dial opens a WebSocket connection to u offering pubsub.v1. A refused
// upgrade is an *Error with the HTTP status, and the broker's code and
// message when its answer has them.
func dial(ctx context.Context, u string, tlsConf *tls.Config) (*conn, error) {
	var refusal *Error
	d := ws.Dialer{
		Timeout:   dialTimeout,
		Protocols: []string{protocol.Subprotocol},
		TLSConfig: tlsConf,
		OnStatusError: func(status int, _ []byte, r io.Reader) {
			refusal = &Error{Status: status, Code: protocol.CodeOfStatus(status), Message: http.StatusText(status)}
			resp, err := http.ReadResponse(bufio.NewReader(r), nil)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			refusal = answerError(status, resp.Header, body)
		},
	}
	nc, br, hs, err := d.Dial(ctx, u)
	if err != nil {
		if refusal != nil {
			return nil, refusal
		}
		return nil, &Error{Code: protocol.CodeUnavailable, Message: "connecting: " + err.Error(), err: err}
	}
	if hs.Protocol != protocol.Subprotocol {
		_ = nc.Close()
		return nil, &Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("the server selected the subprotocol %q, not %s: is this a Tidings broker?", hs.Protocol, protocol.Subprotocol)}
	}
	if br == nil {
		br = bufio.NewReader(nc)
	}
	return &conn{nc: nc, br: br, bw: bufio.NewWriter(nc)}, nil
}

// write writes one frame with payload p (which it masks in place).
func (c *conn) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closing {
		return net.ErrClosed
	}
	return c.writeLocked(ws.NewFrame(op, true, p), writeTimeout)
}

func (c *conn) writeLocked(f ws.Frame, timeout time.Duration) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	if err := ws.WriteFrame(c.bw, ws.MaskFrameInPlace(f)); err != nil {
		return err
	}
	return c.bw.Flush()
}

// send writes v as one JSON text frame.
func (c *conn) send(v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(ws.OpText, p)
}

// close writes a close frame with code and reason (best effort, once) and
// closes the connection.
func (c *conn) close(code ws.StatusCode, reason string) {
	c.wmu.Lock()
	if !c.closing {
		c.closing = true
		var body []byte
		if code != ws.StatusNoStatusRcvd {
			body = ws.NewCloseFrameBody(code, reason)
		}
		_ = c.writeLocked(ws.NewCloseFrame(body), closeWait)
	}
	c.wmu.Unlock()
	_ = c.nc.Close()
}

// readMessage returns the next text message. It answers pings, skips
// pongs, and returns the broker's close frame as a *CloseError, after
// echoing it and closing the connection. When idle is positive and no
// frame begins within it, it returns errIdle and the connection stays
// usable.
func (c *conn) readMessage(idle time.Duration) ([]byte, error) {
	var msg []byte
	inMsg := false
	for {
		h, p, err := c.readFrame(idle)
		if err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpPing:
			if err := c.write(ws.OpPong, p); err != nil {
				return nil, err
			}
		case ws.OpPong:
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			c.close(code, reason)
			if code == ws.StatusNoStatusRcvd {
				code = ws.StatusNormalClosure
			}
			return nil, &CloseError{Code: int(code), Reason: reason}
		case ws.OpText:
			if inMsg {
				return nil, errors.New("a new message inside a fragmented one")
			}
			if h.Fin {
				return p, nil
			}
			msg, inMsg = p, true
		case ws.OpContinuation:
			if !inMsg {
				return nil, errors.New("a continuation frame with no message begun")
			}
			if len(msg)+len(p) > maxMessage {
				return nil, fmt.Errorf("a message over %d bytes", maxMessage)
			}
			msg = append(msg, p...)
			if h.Fin {
				return msg, nil
			}
		default:
			return nil, fmt.Errorf("unexpected frame opcode %d", h.OpCode)
		}
	}
}

// readFrame reads one whole frame. idle bounds the wait for its first
// byte (errIdle, nothing consumed); the rest must come within
// frameTimeout.
func (c *conn) readFrame(idle time.Duration) (ws.Header, []byte, error) {
	if idle > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(idle))
	} else {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	if _, err := c.br.Peek(1); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return ws.Header{}, nil, errIdle
		}
		return ws.Header{}, nil, err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(frameTimeout))
	return wsframe.Read(c.br, maxMessage)
}
