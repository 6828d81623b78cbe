package ws_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

const (
	// ioTimeout bounds every read and write of a test client, so that a
	// frame that never comes fails the test instead of hanging it.
	ioTimeout = 5 * time.Second
	// waitTimeout bounds the tests' waits (testkit.Eventually) for what
	// the server does after the fact, such as counting a close.
	waitTimeout = 5 * time.Second
	// maxServerFrame is the largest frame a test client accepts.
	maxServerFrame = 4 << 20
)

// config builds a harness; zero fields mean the packages' defaults, except
// for the few test defaults newHarness sets.
type config struct {
	ws     wsserver.Config
	broker broker.Config
	store  memory.Config
	// remoteAddr, when set, replaces every request's RemoteAddr so that a
	// test can present a client that is not on loopback.
	remoteAddr string
}

// harness is one broker started in process: a memory store, the broker, the
// WebSocket server and the HTTP API (which mounts it at /v1/ws), served by
// an httptest server.
type harness struct {
	store *memory.Store
	b     *broker.Broker
	srv   *wsserver.Server
	ts    *httptest.Server
	wsURL string
}

// newHarness starts a broker for t. Its cleanup shuts the WebSocket server
// down, closes the store and the HTTP server, in that order.
func newHarness(t testing.TB, cfg config) *harness {
	t.Helper()
	if cfg.ws.NodeID == "" {
		cfg.ws.NodeID = "test-node"
	}
	if cfg.ws.CloseTimeout == 0 {
		cfg.ws.CloseTimeout = 2 * time.Second
	}
	store := memory.New(cfg.store)
	b := broker.New(cfg.broker, store, wsserver.Encoder{})
	srv := wsserver.New(cfg.ws, b)
	var handler http.Handler = httpapi.New(httpapi.Config{}, b, srv)
	if addr := cfg.remoteAddr; addr != "" {
		api := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.RemoteAddr = addr
			api.ServeHTTP(w, r)
		})
	}
	ts := httptest.NewServer(handler)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("ws.Server.Shutdown: %v", err)
		}
		_ = store.Close()
		ts.Close()
	})
	return &harness{
		store: store,
		b:     b,
		srv:   srv,
		ts:    ts,
		wsURL: "ws" + strings.TrimPrefix(ts.URL, "http") + "/v1/ws",
	}
}

// publish publishes data to topic through the broker, as the HTTP API
// does. It is safe to call from any goroutine.
func (h *harness) publish(topic, data string) (*broker.Message, error) {
	msgs, err := h.b.Publish(context.Background(), []broker.Publication{{Topic: topic, Data: json.RawMessage(data)}})
	if err != nil {
		return nil, err
	}
	return msgs[0], nil
}

// mustPublish is publish for the test goroutine: it fails t on error.
func (h *harness) mustPublish(t testing.TB, topic, data string) *broker.Message {
	t.Helper()
	m, err := h.publish(topic, data)
	if err != nil {
		t.Fatalf("publish %s %s: %v", topic, data, err)
	}
	return m
}

// httpResult is the body of a successful POST /v1/publish.
type httpResult struct {
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// publishHTTP publishes data to topic with POST /v1/publish. It is safe
// to call from any goroutine.
func (h *harness) publishHTTP(topic, data string) (httpResult, error) {
	body := `{"topic":` + strconv.Quote(topic) + `,"data":` + data + `}`
	resp, err := h.ts.Client().Post(h.ts.URL+"/v1/publish", "application/json", strings.NewReader(body))
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return httpResult{}, fmt.Errorf("POST /v1/publish: %s: %s", resp.Status, raw)
	}
	var r httpResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return httpResult{}, fmt.Errorf("POST /v1/publish: %w: %s", err, raw)
	}
	return r, nil
}

// client is a real WebSocket client on its own TCP connection. It writes
// masked frames (or raw, possibly invalid, ones) and reads the server's
// frames one at a time so that tests can see every frame on the wire.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	hs   ws.Handshake
	// autoPong makes next answer server pings and skip them.
	autoPong bool
}

// dial opens a session offering protocols; the connection is closed at
// cleanup.
func (h *harness) dial(t testing.TB, protocols ...string) *client {
	t.Helper()
	return h.dialWith(t, ws.Dialer{Protocols: protocols, Timeout: ioTimeout})
}

// dialWith opens a session with d.
func (h *harness) dialWith(t testing.TB, d ws.Dialer) *client {
	t.Helper()
	conn, br, hs, err := d.Dial(context.Background(), h.wsURL)
	if err != nil {
		t.Fatalf("dial %s: %v", h.wsURL, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &client{t: t, conn: conn, r: br, hs: hs}
}

// dialWelcome opens a session and reads its first frame, which must be
// `welcome`.
func (h *harness) dialWelcome(t testing.TB, protocols ...string) (*client, event) {
	t.Helper()
	c := h.dial(t, protocols...)
	return c, c.expect("welcome")
}

// event is one decoded server text frame: the shared test client's typed
// frame, whose Has tells `"offset":0` from a missing offset.
type event struct{ wstest.Frame }

func (e event) String() string { return string(e.Raw) }

// decodeEvent decodes a server text frame's payload.
func decodeEvent(p []byte) (event, error) {
	f, err := wstest.DecodeFrame(p)
	return event{f}, err
}

// peekMessage reads the type and offset of a server text frame without
// scanning past them, so that large `data` values cost nothing to skip.
func peekMessage(p []byte) (typ string, offset uint64, err error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", 0, fmt.Errorf("server frame %.80q is not a JSON object", p)
	}
	var haveType, haveOffset bool
	for dec.More() && !(haveType && haveOffset) {
		key, err := dec.Token()
		if err != nil {
			return "", 0, err
		}
		switch key {
		case "type":
			err, haveType = dec.Decode(&typ), true
		case "offset":
			err, haveOffset = dec.Decode(&offset), true
		default:
			err = dec.Decode(new(json.RawMessage))
		}
		if err != nil {
			return "", 0, fmt.Errorf("server frame %.80q: %w", p, err)
		}
	}
	return typ, offset, nil
}

// checkServerFrame reports frames a server must never send: masked, with
// reserved bits, non-final (the server never fragments), or with an opcode
// other than text, ping, pong and close.
func checkServerFrame(f ws.Frame) error {
	switch {
	case f.Header.Masked:
		return errors.New("server frame is masked")
	case f.Header.Rsv != 0:
		return fmt.Errorf("server frame has reserved bits %03b", f.Header.Rsv)
	case !f.Header.Fin:
		return errors.New("server frame is fragmented")
	}
	switch f.Header.OpCode {
	case ws.OpText, ws.OpPing, ws.OpPong, ws.OpClose:
		return nil
	}
	return fmt.Errorf("server frame has opcode %#x", f.Header.OpCode)
}

// readServerFrame reads one frame from r and checks it with
// checkServerFrame; a frame that fails the check comes with an error
// wrapping errBadServerFrame.
func readServerFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > maxServerFrame {
		return ws.Frame{}, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return ws.Frame{}, err
	}
	if err := checkServerFrame(f); err != nil {
		return f, fmt.Errorf("%w: %v: %s", errBadServerFrame, err, describe(f))
	}
	return f, nil
}

// errBadServerFrame marks a frame that checkServerFrame refused.
var errBadServerFrame = errors.New("bad server frame")

// readFrame reads one server frame under ioTimeout. It does not use t, so
// it may run on any goroutine.
func (c *client) readFrame() (ws.Frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	return readServerFrame(c.r)
}

// next returns the next text frame, decoded. It fails on any other frame,
// except server pings when autoPong is set, which it answers.
func (c *client) next() event {
	c.t.Helper()
	_, e := c.nextOf(func() (wireFrame, error) {
		f, err := c.readFrame()
		return wireFrame{Frame: f, text: f.Payload}, err
	})
	return e
}

// nextOf returns the next text frame that read reads, and its text
// decoded; it answers server pings when autoPong is set and fails on any
// other frame.
func (c *client) nextOf(read func() (wireFrame, error)) (wireFrame, event) {
	c.t.Helper()
	for {
		f, err := read()
		if err != nil {
			c.t.Fatalf("reading a frame: %v", err)
		}
		if c.autoPong && f.Header.OpCode == ws.OpPing {
			c.writeFrame(ws.NewPongFrame(f.Payload))
			continue
		}
		if f.Header.OpCode != ws.OpText {
			c.t.Fatalf("want a text frame, got %s", describe(f.Frame))
		}
		e, err := decodeEvent(f.text)
		if err != nil {
			c.t.Fatal(err)
		}
		return f, e
	}
}

// expect returns the next text frame, which must have type typ.
func (c *client) expect(typ string) event {
	c.t.Helper()
	e := c.next()
	if e.Type != typ {
		c.t.Fatalf("want a %q frame, got %s", typ, e)
	}
	return e
}

// send writes a text frame.
func (c *client) send(text string) {
	c.t.Helper()
	c.writeFrame(ws.NewTextFrame([]byte(text)))
}

// writeFrame writes f masked, as a client must.
func (c *client) writeFrame(f ws.Frame) {
	c.t.Helper()
	f.Header.Masked = true
	c.writeRaw(f.Header, f.Payload)
}

// writeRaw writes a frame with header h as given (h.Length included, so a
// test can lie about it) followed by payload, masked with a fresh key when
// h.Masked is set. Header and payload go out in one write.
func (c *client) writeRaw(h ws.Header, payload []byte) {
	c.t.Helper()
	if err := c.tryWriteRaw(h, payload); err != nil {
		c.t.Fatalf("writing a frame: %v", err)
	}
}

// tryWriteRaw is writeRaw returning its error; it may run on any goroutine.
func (c *client) tryWriteRaw(h ws.Header, payload []byte) error {
	var buf bytes.Buffer
	p := bytes.Clone(payload)
	if h.Masked {
		h.Mask = ws.NewMask()
		ws.Cipher(p, h.Mask, 0)
	}
	if err := ws.WriteHeader(&buf, h); err != nil {
		return err
	}
	buf.Write(p)
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.conn.Write(buf.Bytes())
	return err
}

// sendClose writes a masked close frame with payload p (code and reason,
// or anything a test wants).
func (c *client) sendClose(p []byte) {
	c.t.Helper()
	c.writeFrame(ws.NewCloseFrame(p))
}

// closeBody is a close frame payload: the code, big endian, then reason.
func closeBody(code uint16, reason string) []byte {
	return append([]byte{byte(code >> 8), byte(code)}, reason...)
}

// ping proves that the session is open and in sync: it sends a `ping`
// command and expects the `pong` with the same ref as the next text frame.
func (c *client) ping(ref string) {
	c.t.Helper()
	c.send(`{"op":"ping","ref":` + strconv.Quote(ref) + `}`)
	if e := c.expect("pong"); e.Ref != ref {
		c.t.Fatalf("pong ref = %q, want %q", e.Ref, ref)
	}
}

// subscribe subscribes to topic and returns the `subscribed` answer.
func (c *client) subscribe(topic string) event {
	c.t.Helper()
	c.send(`{"op":"subscribe","topic":` + strconv.Quote(topic) + `}`)
	e := c.expect("subscribed")
	if e.Topic != topic {
		c.t.Fatalf("subscribed to %q, want %q: %s", e.Topic, topic, e)
	}
	return e
}

// forbiddenCloseCodes are never sent on the wire (PROTOCOL.md).
var forbiddenCloseCodes = map[ws.StatusCode]bool{1004: true, 1005: true, 1006: true}

// expectClose reads until the server's close frame and checks its code and,
// when reason is not empty, that its reason contains reason. It then checks
// that the close frame was the only one and the last frame, and that the
// server closed the connection. It returns the frames read before the close.
func (c *client) expectClose(code ws.StatusCode, reason string) []ws.Frame {
	c.t.Helper()
	var before []ws.Frame
	for {
		f, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("want close %d, got error %v after %d frames", code, err, len(before))
		}
		if f.Header.OpCode != ws.OpClose {
			before = append(before, f)
			continue
		}
		if len(f.Payload) < 2 {
			c.t.Fatalf("close frame without a status code: %q", f.Payload)
		}
		got, why := ws.ParseCloseFrameData(f.Payload)
		if forbiddenCloseCodes[got] {
			c.t.Fatalf("server sent close code %d, which must never be on the wire", got)
		}
		if got != code {
			c.t.Fatalf("close code = %d (%q), want %d", got, why, code)
		}
		if reason != "" && !strings.Contains(why, reason) {
			c.t.Fatalf("close reason = %q, want it to contain %q", why, reason)
		}
		break
	}
	c.expectEOF()
	return before
}

// expectEOF checks that the server sends nothing more and closes the
// connection (a read fails, and not by our deadline).
func (c *client) expectEOF() {
	c.t.Helper()
	f, err := c.readFrame()
	switch {
	case err == nil:
		c.t.Fatalf("server sent %s after its close frame", describe(f))
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.t.Fatalf("server did not close the connection within %v", ioTimeout)
	}
}

// expectCut reads until the server ends the connection, which it must do
// without a close frame, and returns the frames read before.
func (c *client) expectCut() []ws.Frame {
	c.t.Helper()
	var frames []ws.Frame
	for {
		f, err := c.readFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("server did not end the connection within %v", ioTimeout)
		}
		if err != nil {
			return frames
		}
		if f.Header.OpCode == ws.OpClose {
			c.t.Fatalf("want the connection cut without a close frame, got %s", describe(f))
		}
		frames = append(frames, f)
	}
}

// describe prints a frame for failure messages.
func describe(f ws.Frame) string {
	if f.Header.OpCode == ws.OpClose && len(f.Payload) >= 2 {
		code, reason := ws.ParseCloseFrameData(f.Payload)
		return fmt.Sprintf("close frame %d %q", code, reason)
	}
	p := f.Payload
	if len(p) > 200 {
		p = p[:200]
	}
	return fmt.Sprintf("frame op=%#x fin=%v len=%d %q", f.Header.OpCode, f.Header.Fin, f.Header.Length, p)
}

// sessionsEnded says how many sessions the broker still has open, or
// returns nil once it has none: a condition for testkit.Eventually.
func (h *harness) sessionsEnded() error {
	if n := h.b.Stats().Sessions; n != 0 {
		return fmt.Errorf("%d sessions open, want 0", n)
	}
	return nil
}

// wantCount returns nil if the counter named what is want, and otherwise
// an error that says what it is: a condition for testkit.Eventually.
func wantCount(what string, got, want uint64) error {
	if got != want {
		return fmt.Errorf("%s = %d, want %d", what, got, want)
	}
	return nil
}

// isUUID reports whether s is a UUID in its canonical 36-character form.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}
