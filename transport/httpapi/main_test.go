package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	wstransport "github.com/tidings-io/tidings/transport/ws"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testEnv is one node's HTTP surface over a real broker, memory store and
// WebSocket server, served by an httptest server on loopback.
type testEnv struct {
	api   *httpapi.API
	b     *broker.Broker
	store *memory.Store
	wsrv  *wstransport.Server
	srv   *httptest.Server
	hc    *http.Client
}

// newEnv builds a node with cfg. Everything stops when the test ends.
func newEnv(t testing.TB, cfg httpapi.Config) *testEnv {
	t.Helper()
	store := memory.New(memory.Config{})
	b := broker.New(broker.Config{}, store, wstransport.Encoder{})
	wsrv := wstransport.New(wstransport.Config{}, b)
	api := httpapi.New(cfg, b, wsrv)
	srv := httptest.NewServer(api)
	tr := &http.Transport{DisableCompression: true}
	e := &testEnv{api: api, b: b, store: store, wsrv: wsrv, srv: srv, hc: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := wsrv.Shutdown(ctx); err != nil {
			t.Errorf("ws shutdown: %v", err)
		}
		srv.Close()
		_ = store.Close()
	})
	return e
}

// reply is a response read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to the test server. Headers are given as pairs.
func (e *testEnv) do(t testing.TB, method, path string, body io.Reader, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: raw}
}

// post sends a JSON body to path.
func (e *testEnv) post(t testing.TB, path, body string, header ...string) reply {
	t.Helper()
	return e.do(t, http.MethodPost, path, strings.NewReader(body), append([]string{"Content-Type", "application/json"}, header...)...)
}

// serve runs one request through API.ServeHTTP with a recorder.
func (e *testEnv) serve(req *http.Request) reply {
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	res := rec.Result()
	raw, _ := io.ReadAll(res.Body)
	return reply{status: res.StatusCode, header: res.Header, body: raw}
}

// result is the 200 answer for one published message.
type result struct {
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// decodeExact decodes raw into v, refusing unknown fields and trailing data.
func decodeExact(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// wantResult checks a 200 reply to POST /v1/publish and returns its body.
func wantResult(t testing.TB, r reply) result {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, body %s; want 200", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var res result
	if err := decodeExact(r.body, &res); err != nil {
		t.Fatalf("200 body %s: %v", r.body, err)
	}
	return res
}

// wantResults checks a 200 reply to POST /v1/publish/batch.
func wantResults(t testing.TB, r reply) []result {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, body %s; want 200", r.status, r.body)
	}
	var res struct {
		Results []result `json:"results"`
	}
	if err := decodeExact(r.body, &res); err != nil {
		t.Fatalf("200 body %s: %v", r.body, err)
	}
	return res.Results
}

// errorBody is the JSON body of every error reply.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkError checks that r is an error reply with status and code, in the
// JSON shape of PROTOCOL.md, and returns its message.
func checkError(r reply, status int, code string) error {
	if r.status != status {
		return fmt.Errorf("status %d, body %s; want %d %s", r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	var eb errorBody
	if err := decodeExact(r.body, &eb); err != nil {
		return fmt.Errorf("error body %s: %v", r.body, err)
	}
	if eb.Error.Code != code {
		return fmt.Errorf("code %q (message %q), want %q", eb.Error.Code, eb.Error.Message, code)
	}
	if eb.Error.Message == "" {
		return fmt.Errorf("error body %s has no message", r.body)
	}
	return nil
}

func wantError(t testing.TB, r reply, status int, code string) {
	t.Helper()
	if err := checkError(r, status, code); err != nil {
		t.Error(err)
	}
}

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		<-tick.C
	}
}

// wsClient is a real WebSocket client of the test server.
type wsClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

// frame is a server frame: its raw text and its fields.
type frame struct {
	raw    string
	Type   string          `json:"type"`
	Topic  string          `json:"topic"`
	Sub    string          `json:"sub"`
	ID     string          `json:"id"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
	Code   string          `json:"code"`
}

// dial opens a session and reads its welcome frame.
func (e *testEnv) dial(t testing.TB) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/ws"
	nc, br, _, err := ws.Dialer{Protocols: []string{wstransport.Subprotocol}}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReader(nc)
	}
	c := &wsClient{t: t, nc: nc, r: br}
	if f := c.next(); f.Type != "welcome" {
		t.Fatalf("first frame %s, want welcome", f.raw)
	}
	return c
}

// next reads the next text frame, failing the test after 10s or on a
// close frame.
func (c *wsClient) next() frame {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := readFrame(c.r)
		if err != nil {
			c.t.Fatalf("reading a frame: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText:
			fr := frame{raw: string(f.Payload)}
			if err := json.Unmarshal(f.Payload, &fr); err != nil {
				c.t.Fatalf("frame %q: %v", f.Payload, err)
			}
			return fr
		case ws.OpPing:
			_ = ws.WriteFrame(c.nc, ws.MaskFrameInPlace(ws.NewPongFrame(f.Payload)))
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			c.t.Fatalf("session closed: %d %q", code, reason)
		}
	}
}

// send writes one command.
func (c *wsClient) send(v any) {
	c.t.Helper()
	p, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := wsutil.WriteClientMessage(c.nc, ws.OpText, p); err != nil {
		c.t.Fatalf("sending %s: %v", p, err)
	}
}

// subscribe subscribes to each pattern and waits for the answers.
func (c *wsClient) subscribe(patterns ...string) {
	c.t.Helper()
	for _, p := range patterns {
		c.send(map[string]string{"op": "subscribe", "topic": p})
		if f := c.next(); f.Type != "subscribed" || f.Topic != p {
			c.t.Fatalf("subscribe %s: got %s", p, f.raw)
		}
	}
}

// message reads the next frame, which must be a message.
func (c *wsClient) message() frame {
	c.t.Helper()
	f := c.next()
	if f.Type != "message" {
		c.t.Fatalf("got %s, want a message", f.raw)
	}
	return f
}

// closeNormally sends close 1000 and waits for the server's echo.
func (c *wsClient) closeNormally() {
	c.t.Helper()
	if err := ws.WriteFrame(c.nc, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))); err != nil {
		c.t.Fatal(err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := readFrame(c.r)
		if err != nil {
			c.t.Fatalf("waiting for the close echo: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusNormalClosure {
				c.t.Fatalf("close echo %d, want 1000", code)
			}
			return
		}
	}
}

// maxTestFrame bounds the payload of a server frame the test client reads.
const maxTestFrame = 4 << 20

// readFrame reads one whole frame of at most maxTestFrame payload bytes.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > maxTestFrame {
		return ws.Frame{}, fmt.Errorf("frame of %d bytes, over the test client's %d", h.Length, maxTestFrame)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return ws.Frame{Header: h, Payload: p}, nil
}
