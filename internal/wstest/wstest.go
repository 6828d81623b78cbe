// Package wstest is a small real WebSocket client for tests of the
// broker's wire protocol: it dials with gobwas/ws, sends JSON commands and
// reads server frames, close frames included.
package wstest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Frame is a decoded server text frame, or a close frame (Close set).
type Frame struct {
	// Type is the frame's "type" field.
	Type string
	// Fields holds every field of the JSON object.
	Fields map[string]any
	// Raw is the frame's payload as received.
	Raw []byte
	// Close is set for a close frame: its code and reason.
	Close *CloseInfo
}

// CloseInfo is the code and reason of a close frame.
type CloseInfo struct {
	Code   int
	Reason string
}

// Str returns field name as a string ("" if absent).
func (f Frame) Str(name string) string { s, _ := f.Fields[name].(string); return s }

// Uint returns field name as an unsigned number (0 if absent).
func (f Frame) Uint(name string) uint64 { n, _ := f.Fields[name].(float64); return uint64(n) }

// Client is one WebSocket session.
type Client struct {
	t    testing.TB
	Conn net.Conn
	br   *bufio.Reader
	// Welcome is the session's first frame.
	Welcome Frame
}

// Dial opens a session at url (ws://host/v1/ws) and reads the welcome
// frame. The connection is closed at cleanup.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dialer{Protocols: []string{"pubsub.v1"}}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &Client{t: t, Conn: conn, br: br}
	t.Cleanup(func() { _ = conn.Close() })
	c.Welcome = c.Next(10 * time.Second)
	if c.Welcome.Type != "welcome" {
		t.Fatalf("first frame %s, want welcome", c.Welcome.Raw)
	}
	return c
}

// Send writes one JSON command.
func (c *Client) Send(cmd map[string]any) {
	c.t.Helper()
	p, err := json.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := wsutil.WriteClientText(c.Conn, p); err != nil {
		c.t.Fatalf("send %s: %v", p, err)
	}
}

// Next returns the next text or close frame, answering pings on the way;
// the test fails if none arrives within timeout.
func (c *Client) Next(timeout time.Duration) Frame {
	c.t.Helper()
	f, err := c.TryNext(timeout)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// TryNext is Next that returns the error instead of failing.
func (c *Client) TryNext(timeout time.Duration) (Frame, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return Frame{}, err
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return Frame{}, err
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = wsutil.WriteClientMessage(c.Conn, ws.OpPong, p)
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			ci := &CloseInfo{Code: 1005}
			if len(p) >= 2 {
				ci.Code = int(binary.BigEndian.Uint16(p))
				ci.Reason = string(p[2:])
			}
			return Frame{Type: "close", Raw: p, Close: ci}, nil
		}
		f := Frame{Raw: p}
		if err := json.Unmarshal(p, &f.Fields); err != nil {
			return f, fmt.Errorf("frame %q is not a JSON object: %w", p, err)
		}
		f.Type = f.Str("type")
		return f, nil
	}
}

// Subscribe subscribes to topic (with since when not nil) and returns the
// `subscribed` answer; any other frame before it fails the test.
func (c *Client) Subscribe(topic string, since map[string]any) Frame {
	c.t.Helper()
	cmd := map[string]any{"op": "subscribe", "topic": topic, "ref": "s:" + topic}
	if since != nil {
		cmd["since"] = since
	}
	c.Send(cmd)
	f := c.Next(10 * time.Second)
	if f.Type != "subscribed" || f.Str("ref") != "s:"+topic {
		c.t.Fatalf("subscribe %s answered %s", topic, f.Raw)
	}
	return f
}

// CloseWith sends a close frame with code and reason.
func (c *Client) CloseWith(code int, reason string) {
	c.t.Helper()
	body := ws.NewCloseFrameBody(ws.StatusCode(code), reason)
	if err := wsutil.WriteClientMessage(c.Conn, ws.OpClose, body); err != nil && !strings.Contains(err.Error(), "closed") {
		c.t.Fatalf("sending close: %v", err)
	}
}
