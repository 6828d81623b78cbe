package ws_test

// A raw client for permessage-deflate (RFC 7692): it offers the
// extension exactly as a test writes it, checks every server frame's
// bytes and RSV bits, inflates compressed frames with compress/flate on
// its own, and compresses what it sends as a browser would, with or
// without context takeover.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// deflateTrailer is what RFC 7692 removes from the end of a compressed
// payload, and a receiver appends before inflating.
var deflateTrailer = []byte{0x00, 0x00, 0xff, 0xff}

// upgradeResult is what a raw handshake got: the status, and the
// Sec-WebSocket-Extensions the server answered ("" for none).
type upgradeResult struct {
	status     int
	extensions string
}

// dialOffer opens a session with a handshake of its own that sends one
// Sec-WebSocket-Extensions line per offer (none when offers is empty).
// The connection is closed at cleanup. It fails t unless the server
// answers 101.
func (h *harness) dialOffer(t testing.TB, offers ...string) (*client, upgradeResult) {
	t.Helper()
	c, res := h.tryOffer(t, offers...)
	if res.status != http.StatusSwitchingProtocols {
		t.Fatalf("offering %q: status %d, want 101", offers, res.status)
	}
	return c, res
}

// tryOffer is dialOffer that returns whatever status the server answers.
func (h *harness) tryOffer(t testing.TB, offers ...string) (*client, upgradeResult) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.ts.Listener.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var key [16]byte
	_, _ = rand.Read(key[:])
	var req strings.Builder
	fmt.Fprintf(&req, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", h.ts.Listener.Addr())
	fmt.Fprintf(&req, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", base64.StdEncoding.EncodeToString(key[:]))
	for _, o := range offers {
		fmt.Fprintf(&req, "Sec-WebSocket-Extensions: %s\r\n", o)
	}
	req.WriteString("\r\n")
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("reading the handshake's answer: %v", err)
	}
	_ = conn.SetDeadline(time.Time{})
	res := upgradeResult{status: resp.StatusCode, extensions: strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", ")}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
	}
	return &client{t: t, conn: conn, r: br}, res
}

// wireFrame is a server frame as it came, and its text once inflated.
type wireFrame struct {
	ws.Frame
	compressed bool
	// text is the frame's payload, inflated when compressed.
	text []byte
}

// readDeflateFrame reads one server frame of a session whose compression
// is negotiated (or not) and checks its bytes: unmasked, final, a known
// opcode, no RSV bit but RSV1 and that only on a text frame of a session
// that negotiated compression; a compressed payload must inflate. It
// does not use t, so it may run on any goroutine.
func (c *client) readDeflateFrame(negotiated bool) (wireFrame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return wireFrame{}, err
	}
	if h.Length > maxServerFrame {
		return wireFrame{}, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	f := wireFrame{Frame: ws.Frame{Header: h, Payload: make([]byte, h.Length)}}
	if _, err := io.ReadFull(c.r, f.Payload); err != nil {
		return f, err
	}
	check := h
	if h.Rsv == ws.Rsv(true, false, false) && h.OpCode == ws.OpText && negotiated {
		f.compressed = true
		check.Rsv = 0
	}
	if err := checkServerFrame(ws.Frame{Header: check}); err != nil {
		return f, fmt.Errorf("%w: %v (rsv %03b, negotiated %v)", errBadServerFrame, err, h.Rsv, negotiated)
	}
	f.text = f.Payload
	if f.compressed {
		if f.text, err = inflateRFC7692(f.Payload); err != nil {
			return f, fmt.Errorf("inflating a server frame: %w", err)
		}
	}
	return f, nil
}

// nextDeflate returns the next text frame (answering pings when autoPong
// is set), its text decoded.
func (c *client) nextDeflate(negotiated bool) (wireFrame, event) {
	c.t.Helper()
	return c.nextOf(func() (wireFrame, error) { return c.readDeflateFrame(negotiated) })
}

// expectDeflate returns the next text frame, which must have type typ.
func (c *client) expectDeflate(negotiated bool, typ string) (wireFrame, event) {
	c.t.Helper()
	f, e := c.nextDeflate(negotiated)
	if e.Type != typ {
		c.t.Fatalf("want a %q frame, got %s", typ, e)
	}
	return f, e
}

// inflateRFC7692 inflates a compressed payload as RFC 7692 section 7.2.2
// says, with no context from earlier messages (the server never uses
// context takeover).
func inflateRFC7692(p []byte) ([]byte, error) {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTrailer)))
	out, err := io.ReadAll(r)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// The stream has no final block: the message ended.
		err = nil
	}
	return out, err
}

// clientDeflater compresses a client's messages as RFC 7692 section
// 7.2.1 says; with takeover, one deflate stream runs across messages, so
// that a message refers back into the earlier ones.
type clientDeflater struct {
	w        *flate.Writer
	buf      bytes.Buffer
	takeover bool
}

func newClientDeflater(takeover bool) *clientDeflater {
	d := &clientDeflater{takeover: takeover}
	d.w, _ = flate.NewWriter(&d.buf, flate.BestCompression)
	return d
}

// compress returns p's compressed payload, the trailer removed.
func (d *clientDeflater) compress(p []byte) []byte {
	d.buf.Reset()
	if !d.takeover {
		d.w.Reset(&d.buf)
	}
	_, _ = d.w.Write(p)
	_ = d.w.Flush()
	out, ok := bytes.CutSuffix(bytes.Clone(d.buf.Bytes()), deflateTrailer)
	if !ok {
		panic("a sync flush that does not end with 0x00 0x00 0xff 0xff")
	}
	return out
}

// compressedText is a text frame with RSV1 set, carrying payload
// (compressed), final or not.
func compressedText(payload []byte, fin bool) ws.Frame {
	f := ws.NewFrame(ws.OpText, fin, payload)
	f.Header.Rsv = ws.Rsv(true, false, false)
	return f
}

// sendCompressed sends text compressed by d in one frame.
func (c *client) sendCompressed(d *clientDeflater, text string) {
	c.t.Helper()
	c.writeFrame(compressedText(d.compress([]byte(text)), true))
}
