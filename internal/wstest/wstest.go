// Package wstest is a real WebSocket client for tests of the broker's wire
// protocol (docs/PROTOCOL.md): it dials with gobwas/ws offering the
// pubsub.v1 subprotocol, sends JSON commands and reads server frames, close
// frames included, answering the server's pings on the way.
//
// Conn is the core: its methods return errors, so that it can be used from
// any goroutine. Client wraps a Conn for the goroutine running a test: its
// methods fail the test instead, and bound every read by readTimeout.
package wstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/wsframe"
	"github.com/tidings-io/tidings/protocol"
)

const (
	// maxFrame bounds the payload of a frame the client reads, and the body
	// of a refused handshake it keeps.
	maxFrame = 4 << 20
	// readTimeout bounds each read of a Client, the welcome included, and
	// its handshake.
	readTimeout = 10 * time.Second
	// dialTimeout bounds the connect and the handshake when Dialer.Timeout
	// is zero.
	dialTimeout = 20 * time.Second
)

// Frame is a decoded server text frame: the fields of docs/PROTOCOL.md that
// its type carries are set (see protocol.Frame), the others are zero; Raw
// and Close add what the test client saw.
type Frame struct {
	protocol.Frame

	// Raw is the frame's payload as received. For a close frame returned
	// by Client.Next it is a description of the close (code and reason).
	Raw []byte `json:"-"`
	// Close is set, and Type is "close", when Client.Next returns the
	// server's close frame.
	Close *CloseError `json:"-"`
}

// Has reports whether the frame's JSON object has a field called name,
// whatever its value.
func (f Frame) Has(name string) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(f.Raw, &fields) != nil {
		return false
	}
	_, ok := fields[name]
	return ok
}

// DecodeFrame decodes a server text frame's payload p, which must be a
// JSON object whose fields have the types of Frame's. Raw is p, also on
// error.
func DecodeFrame(p []byte) (Frame, error) {
	f := Frame{Raw: p}
	if b := bytes.TrimLeft(p, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return f, fmt.Errorf("server text frame is not a JSON object: %q", p)
	}
	if err := json.Unmarshal(p, &f); err != nil {
		return Frame{Raw: p}, fmt.Errorf("server text frame %q: %w", p, err)
	}
	return f, nil
}

// CloseError reports the server's close frame: its code (1005 when it has
// none) and reason.
type CloseError struct {
	Code   ws.StatusCode // the close code
	Reason string        // the close reason, possibly empty
}

// Error describes the close frame: code and quoted reason.
func (e *CloseError) Error() string { return fmt.Sprintf("close %d %q", e.Code, e.Reason) }

// AsClose returns the close frame err reports, or nil if it reports none.
func AsClose(err error) *CloseError {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce
	}
	return nil
}

// RefusedError reports a handshake the server answered with an HTTP status
// other than 101, and the body of that answer.
type RefusedError struct {
	Status int    // the HTTP status
	Body   []byte // the response body, at most maxFrame bytes of it
}

// Error describes the refusal: status and body.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("handshake refused: %d %s", e.Status, e.Body)
}

// Dialer opens sessions. Its zero value offers the pubsub.v1 subprotocol
// with no other header, over plain TCP.
type Dialer struct {
	// Header holds extra headers of the upgrade request.
	Header http.Header
	// TLSConfig is used for wss:// URLs.
	TLSConfig *tls.Config
	// NoSubprotocol makes the client offer no subprotocol, and not check
	// which one the server selected.
	NoSubprotocol bool
	// Timeout bounds the connect and the handshake, as does the context
	// given to Open; zero means dialTimeout.
	Timeout time.Duration
}

// Open dials url (ws://host/v1/ws or wss://…) and completes the handshake.
// Unless NoSubprotocol is set, the server must select pubsub.v1. A
// refusal is reported as a *RefusedError. The session's first frame, the
// welcome, is left to be read.
func (d Dialer) Open(ctx context.Context, url string) (*Conn, error) {
	var refusal *RefusedError
	wd := ws.Dialer{
		TLSConfig: d.TLSConfig,
		Timeout:   d.Timeout,
		OnStatusError: func(status int, _ []byte, r io.Reader) {
			refusal = &RefusedError{Status: status}
			if resp, err := http.ReadResponse(bufio.NewReader(r), nil); err == nil {
				refusal.Body, _ = io.ReadAll(io.LimitReader(resp.Body, maxFrame))
			}
		},
	}
	if wd.Timeout == 0 {
		wd.Timeout = dialTimeout
	}
	if d.Header != nil {
		wd.Header = ws.HandshakeHeaderHTTP(d.Header)
	}
	if !d.NoSubprotocol {
		wd.Protocols = []string{protocol.Subprotocol}
	}
	nc, br, hs, err := wd.Dial(ctx, url)
	var status ws.StatusError
	if errors.As(err, &status) && refusal != nil {
		return nil, refusal
	}
	if err != nil {
		return nil, err
	}
	if !d.NoSubprotocol && hs.Protocol != protocol.Subprotocol {
		_ = nc.Close()
		return nil, fmt.Errorf("subprotocol %q selected, want %s", hs.Protocol, protocol.Subprotocol)
	}
	if br == nil {
		br = bufio.NewReader(nc)
	}
	return &Conn{nc: nc, br: br}, nil
}

// Open dials url with the zero Dialer.
func Open(ctx context.Context, url string) (*Conn, error) { return Dialer{}.Open(ctx, url) }

// Conn is one session. Its methods return errors and may be called from
// any goroutine, one at a time.
type Conn struct {
	nc net.Conn
	br *bufio.Reader
}

// Close closes the connection without a close frame.
func (c *Conn) Close() error { return c.nc.Close() }

// WriteFrame writes f, masked as a client's frames must be.
func (c *Conn) WriteFrame(f ws.Frame) error {
	return ws.WriteFrame(c.nc, ws.MaskFrameInPlace(f))
}

// Send writes one text frame holding v as JSON.
func (c *Conn) Send(v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteFrame(ws.NewTextFrame(p))
}

// SendClose writes a close frame with code and reason. Code 1005 (no
// status), which never goes on the wire, writes a close frame without a
// payload.
func (c *Conn) SendClose(code ws.StatusCode, reason string) error {
	var body []byte
	if code != ws.StatusNoStatusRcvd {
		body = ws.NewCloseFrameBody(code, reason)
	}
	return c.WriteFrame(ws.NewCloseFrame(body))
}

// Next reads the next text frame before deadline. It answers pings and
// skips pongs; the server's close frame is returned as a *CloseError,
// without an answer.
func (c *Conn) Next(deadline time.Time) (Frame, error) {
	_ = c.nc.SetReadDeadline(deadline)
	for {
		h, p, err := wsframe.Read(c.br, maxFrame)
		if err != nil {
			return Frame{}, err
		}
		switch h.OpCode {
		case ws.OpText:
			return DecodeFrame(p)
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return Frame{}, &CloseError{Code: code, Reason: reason}
		case ws.OpPing:
			if err := c.WriteFrame(ws.NewPongFrame(p)); err != nil {
				return Frame{}, err
			}
		case ws.OpPong:
		default:
			return Frame{}, fmt.Errorf("unexpected opcode %v", h.OpCode)
		}
	}
}

// Expect reads the next text frame before deadline and checks its type.
func (c *Conn) Expect(typ string, deadline time.Time) (Frame, error) {
	f, err := c.Next(deadline)
	if err != nil {
		return f, err
	}
	if f.Type != typ {
		return f, fmt.Errorf("got %s, want a %q frame", f.Raw, typ)
	}
	return f, nil
}

// Subscribe sends a subscribe command for each topic (or pattern), with
// the ref "s:" + topic, then reads one answer per topic before deadline:
// each must be `subscribed`, with the ref and topic of a command not
// answered yet, in any order.
func (c *Conn) Subscribe(deadline time.Time, topics ...string) error {
	pending := make(map[string]string, len(topics)) // ref → topic
	for _, topic := range topics {
		pending[subscribeRef(topic)] = topic
		if err := c.Send(subscribeCommand(topic)); err != nil {
			return err
		}
	}
	for range topics {
		f, err := c.Expect("subscribed", deadline)
		if err != nil {
			return err
		}
		if topic, ok := pending[f.Ref]; !ok || f.Topic != topic {
			return fmt.Errorf("subscribing to %q answered %s", topics, f.Raw)
		}
		delete(pending, f.Ref)
	}
	return nil
}

// subscribeRef is the ref of the subscribe command for topic.
func subscribeRef(topic string) string { return "s:" + topic }

// subscribeCommand is the subscribe command for topic.
func subscribeCommand(topic string) map[string]any {
	return map[string]any{"op": "subscribe", "topic": topic, "ref": subscribeRef(topic)}
}

// WaitClose reads frames before deadline, skipping text frames, until the
// server's close frame, and returns it.
func (c *Conn) WaitClose(deadline time.Time) (*CloseError, error) {
	for {
		_, err := c.Next(deadline)
		if ce := AsClose(err); ce != nil {
			return ce, nil
		}
		if err != nil {
			return nil, fmt.Errorf("waiting for a close frame: %w", err)
		}
	}
}

// Drain reads and discards everything until the connection ends or
// deadline passes. It returns nil when the server ended the connection
// cleanly (EOF), and the read error otherwise.
func (c *Conn) Drain(deadline time.Time) error {
	_ = c.nc.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, c.br)
	return err
}

// Client is a session driven by the goroutine of a test: its methods fail
// the test on an error, and each read gives up after readTimeout.
type Client struct {
	t testing.TB
	// Conn is the session, for what the Client does not offer.
	Conn *Conn
	// Welcome is the session's welcome frame.
	Welcome Frame
}

// Dial opens a session at url and reads its welcome frame, failing the
// test if either does not succeed within readTimeout. The connection is
// closed when the test ends.
func (d Dialer) Dial(t testing.TB, url string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	conn, err := d.Open(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &Client{t: t, Conn: conn}
	c.Welcome = c.Expect("welcome")
	return c
}

// Dial opens a session at url with the zero Dialer, as Dialer.Dial does.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	return Dialer{}.Dial(t, url)
}

// Send writes one command, v as JSON.
func (c *Client) Send(v any) {
	c.t.Helper()
	if err := c.Conn.Send(v); err != nil {
		c.t.Fatalf("sending %v: %v", v, err)
	}
}

// Next returns the next text frame, or the server's close frame as a Frame
// of type "close" with Close set. Pings are answered on the way.
func (c *Client) Next() Frame {
	c.t.Helper()
	f, err := c.Conn.Next(time.Now().Add(readTimeout))
	if ce := AsClose(err); ce != nil {
		return Frame{Frame: protocol.Frame{Type: "close"}, Raw: []byte(ce.Error()), Close: ce}
	}
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// Expect returns the next frame, which must be of type typ.
func (c *Client) Expect(typ string) Frame {
	c.t.Helper()
	f := c.Next()
	if f.Type != typ {
		c.t.Fatalf("got %s, want a %q frame", f.Raw, typ)
	}
	return f
}

// Subscribe subscribes to each topic (or pattern) in turn, as
// Conn.Subscribe does, waiting for each answer before the next command.
func (c *Client) Subscribe(topics ...string) {
	c.t.Helper()
	for _, topic := range topics {
		if err := c.Conn.Subscribe(time.Now().Add(readTimeout), topic); err != nil {
			c.t.Fatalf("subscribe %s: %v", topic, err)
		}
	}
}

// Resume subscribes to topic since offset in epoch and returns the
// `subscribed` answer, which must carry the command's ref and the topic.
func (c *Client) Resume(topic string, offset uint64, epoch string) Frame {
	c.t.Helper()
	cmd := subscribeCommand(topic)
	cmd["since"] = map[string]any{"offset": offset, "epoch": epoch}
	c.Send(cmd)
	f := c.Expect("subscribed")
	if f.Ref != subscribeRef(topic) || f.Topic != topic {
		c.t.Fatalf("resume %s answered %s", topic, f.Raw)
	}
	return f
}

// SendClose writes a close frame, as Conn.SendClose does.
func (c *Client) SendClose(code ws.StatusCode, reason string) {
	c.t.Helper()
	if err := c.Conn.SendClose(code, reason); err != nil {
		c.t.Fatalf("sending close %d: %v", code, err)
	}
}

// WaitClose reads until the server's close frame, skipping text frames,
// and returns it.
func (c *Client) WaitClose() *CloseError {
	c.t.Helper()
	ce, err := c.Conn.WaitClose(time.Now().Add(readTimeout))
	if err != nil {
		c.t.Fatal(err)
	}
	return ce
}

// CloseNormally sends close 1000 and waits for the server's echo, which
// must be 1000 too.
func (c *Client) CloseNormally() {
	c.t.Helper()
	c.SendClose(ws.StatusNormalClosure, "")
	if ce := c.WaitClose(); ce.Code != ws.StatusNormalClosure {
		c.t.Fatalf("close echo %d, want 1000", ce.Code)
	}
}
