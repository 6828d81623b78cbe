package stream_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	gws "github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/stream"
	"github.com/tidings-io/tidings/transport/ws"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a stream server on a broker whose encoder is the WebSocket
// transport's, as a node's is, behind an httptest server.
type env struct {
	b   *broker.Broker
	srv *stream.Server
	ts  *httptest.Server
}

type envOpts struct {
	broker broker.Config
	// http2 serves over TLS with HTTP/2.
	http2 bool
}

func newEnv(t *testing.T, cfg stream.Config, opts envOpts) *env {
	t.Helper()
	store := memory.New(memory.Config{})
	b := broker.New(opts.broker, store, ws.Encoder{})
	srv := stream.New(cfg, b)
	mux := http.NewServeMux()
	mux.Handle("/v1/stream", srv)
	mux.Handle("/v1/stream/", srv)
	ts := httptest.NewUnstartedServer(mux)
	if opts.http2 {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		ts.Close()
		_ = store.Close()
	})
	return &env{b: b, srv: srv, ts: ts}
}

func (e *env) url() string { return e.ts.URL + "/v1/stream" }

// frame is one WebSocket frame of a stream: its opcode, payload, and all
// its bytes as read.
type frame struct {
	op      gws.OpCode
	payload []byte
	raw     []byte
}

// conn is a raw client of one session: the GET's frames, read and checked
// on a goroutine of its own, and POSTs with the session's key.
type conn struct {
	t      *testing.T
	e      *env
	resp   *http.Response
	key    string
	id     string // the session id, from the welcome
	frames chan frame
	errc   chan error
}

// open opens a session that must answer 200; token, when not empty,
// goes in the query.
func (e *env) open(t *testing.T, token string) *conn {
	t.Helper()
	c := e.openPaused(t, token)
	c.resume()
	return c
}

// openPaused opens a session whose body is not read until resume.
func (e *env) openPaused(t *testing.T, token string) *conn {
	t.Helper()
	u := e.url()
	if token != "" {
		u += "?token=" + token
	}
	resp, err := e.ts.Client().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	c := &conn{t: t, e: e, resp: resp, key: resp.Header.Get(stream.KeyHeader), frames: make(chan frame, 4096), errc: make(chan error, 1)}
	if k, err := hex.DecodeString(c.key); err != nil || len(k) != 16 {
		t.Fatalf("key %q is not 128 bits in hex", c.key)
	}
	t.Cleanup(c.close)
	return c
}

// resume starts reading the body.
func (c *conn) resume() { go c.read() }

func (c *conn) close() { _ = c.resp.Body.Close() }

// read parses the body as server WebSocket frames, checking each: FIN
// set, no reserved bit, no mask, the shortest length encoding, a known
// opcode; a ping empty; a text frame a JSON object in UTF-8; a close
// frame a code and a reason.
func (c *conn) read() {
	defer close(c.frames)
	for {
		f, err := readFrame(c.resp.Body)
		if err != nil {
			c.errc <- err
			return
		}
		c.frames <- f
	}
}

func readFrame(r io.Reader) (frame, error) {
	h := make([]byte, 2, 10)
	if _, err := io.ReadFull(r, h); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return frame{}, fmt.Errorf("stream ended inside a frame header")
		}
		return frame{}, err
	}
	if h[0]&0x80 == 0 || h[0]&0x70 != 0 || h[1]&0x80 != 0 {
		return frame{}, fmt.Errorf("frame header %x: want FIN, no reserved bit, no mask", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		h = append(h, 0, 0)
		if _, err := io.ReadFull(r, h[2:]); err != nil {
			return frame{}, err
		}
		if n = uint64(binary.BigEndian.Uint16(h[2:])); n <= 125 {
			return frame{}, fmt.Errorf("length %d in 16 bits", n)
		}
	case 127:
		h = append(h, make([]byte, 8)...)
		if _, err := io.ReadFull(r, h[2:]); err != nil {
			return frame{}, err
		}
		if n = binary.BigEndian.Uint64(h[2:]); n <= 0xffff {
			return frame{}, fmt.Errorf("length %d in 64 bits", n)
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return frame{}, fmt.Errorf("stream ended inside a frame: %w", err)
	}
	f := frame{op: gws.OpCode(h[0] & 0x0f), payload: p, raw: append(h, p...)}
	switch f.op {
	case gws.OpPing:
		if n != 0 {
			return f, fmt.Errorf("ping with a payload %q", p)
		}
	case gws.OpText:
		if !utf8.Valid(p) || !json.Valid(p) || p[0] != '{' {
			return f, fmt.Errorf("text frame %q is not a JSON object", p)
		}
	case gws.OpClose:
		if n < 2 || !utf8.Valid(p[2:]) {
			return f, fmt.Errorf("close frame payload %q", p)
		}
	default:
		return f, fmt.Errorf("opcode %d", f.op)
	}
	return f, nil
}

// nextAny returns the next frame, pings included.
func (c *conn) nextAny() frame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("stream ended: %v", <-c.errc)
		}
		return f
	case <-time.After(5 * time.Second):
		c.t.Fatal("no frame within 5s")
		return frame{}
	}
}

// next returns the next frame that is not a ping.
func (c *conn) next() frame {
	c.t.Helper()
	for {
		if f := c.nextAny(); f.op != gws.OpPing {
			return f
		}
	}
}

// expect returns the next frame, which must be a text frame of type typ,
// decoded.
func (c *conn) expect(typ string) map[string]any {
	c.t.Helper()
	f := c.next()
	var m map[string]any
	if f.op != gws.OpText {
		c.t.Fatalf("frame %d %q, want %s", f.op, f.payload, typ)
	}
	if err := json.Unmarshal(f.payload, &m); err != nil {
		c.t.Fatal(err)
	}
	if m["type"] != typ {
		c.t.Fatalf("frame %s, want %s", f.payload, typ)
	}
	if typ == "welcome" {
		c.id, _ = m["session"].(string)
	}
	// A reply is framed as the WebSocket transport frames it.
	if want := gws.MustCompileFrame(gws.NewTextFrame(f.payload)); !bytes.Equal(f.raw, want) {
		c.t.Fatalf("frame bytes %x, want %x", f.raw, want)
	}
	return m
}

// expectMessage reads the frame of m delivered through sub ("" for an
// exact subscription), which must be byte for byte the WebSocket
// transport's.
func (c *conn) expectMessage(m *broker.Message, sub string) {
	c.t.Helper()
	f := c.next()
	if want := (ws.Encoder{}).Message(m, sub); !bytes.Equal(f.raw, want) {
		c.t.Fatalf("frame %q, want the WebSocket frame %q", f.raw, want)
	}
}

// expectClose reads the close frame, which must carry code and reason,
// then the end of the response.
func (c *conn) expectClose(code int, reason string) {
	c.t.Helper()
	c.isClose(c.next(), code, reason)
}

// isClose checks that f is the close frame with code and reason, then
// waits for the end of the response.
func (c *conn) isClose(f frame, code int, reason string) {
	c.t.Helper()
	want := gws.MustCompileFrame(gws.NewCloseFrame(gws.NewCloseFrameBody(gws.StatusCode(code), reason)))
	if !bytes.Equal(f.raw, want) {
		c.t.Fatalf("frame %d %q, want close %d %q", f.op, f.payload, code, reason)
	}
	c.ended()
}

// ended waits for the clean end of the response.
func (c *conn) ended() {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if ok {
			c.t.Fatalf("frame %d %q where the stream should end", f.op, f.payload)
		}
		if err := <-c.errc; err != io.EOF {
			c.t.Fatalf("stream ended with %v, want a clean end", err)
		}
	case <-time.After(5 * time.Second):
		c.t.Fatal("stream did not end within 5s")
	}
}

type apiError struct{ Code, Message string }

// post sends body to the session's key and returns the status, and the
// error body when there is one.
func (c *conn) post(body string) (int, apiError) {
	c.t.Helper()
	return c.e.postTo(c.t, c.key, body)
}

func (e *env) postTo(t *testing.T, key, body string) (int, apiError) {
	t.Helper()
	resp, err := e.ts.Client().Post(e.url()+"/"+key, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return resp.StatusCode, apiError{}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d with Content-Type %q", resp.StatusCode, ct)
	}
	var out struct{ Error apiError }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out.Error
}

// mustPost posts body, which must be answered 204.
func (c *conn) mustPost(body string) {
	c.t.Helper()
	if status, e := c.post(body); status != http.StatusNoContent {
		c.t.Fatalf("POST %s: %d %+v", body, status, e)
	}
}

func decode(t *testing.T, p []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("%q: %v", p, err)
	}
	return m
}

// wsMessage is the WebSocket transport's frame of m through sub.
func wsMessage(m *broker.Message, sub string) []byte { return (ws.Encoder{}).Message(m, sub) }
