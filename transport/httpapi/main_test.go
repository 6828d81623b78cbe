package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/session"
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
	return serveEnv(t, httpapi.New(cfg, b, wsrv), b, store, wsrv, nil)
}

// controlled starts a control plane with cfg on a broker on a memory
// store, and a WebSocket server whose sessions it registers. When the
// test ends the server shuts down, then the control plane and store
// close.
func controlled(t testing.TB, cfg node.Config) (*broker.Broker, *node.Node, *wstransport.Server) {
	t.Helper()
	st := memory.New(memory.Config{})
	b := broker.New(broker.Config{}, st, wstransport.Encoder{})
	cfg.Broker, cfg.Backend = b, st
	ctl := node.New(cfg)
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	wsrv := wstransport.New(wstransport.Config{Services: session.Services{Registry: ctl}}, b)
	t.Cleanup(func() {
		_ = wsrv.Shutdown(context.Background())
		ctl.Close()
		_ = st.Close()
	})
	return b, ctl, wsrv
}

// serveEnv serves api on a test server. When the test ends it shuts wsrv
// down, closes the server and store, then calls stop, if not nil, with
// the shutdown's context.
func serveEnv(t testing.TB, api *httpapi.API, b *broker.Broker, store *memory.Store, wsrv *wstransport.Server, stop func(context.Context)) *testEnv {
	t.Helper()
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
		if stop != nil {
			stop(ctx)
		}
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

// waitTimeout bounds the tests' waits (testkit.Eventually) for what the
// node does after the fact, such as recording a metric or ending a span.
const waitTimeout = 10 * time.Second

// sessionsEnded says how many sessions the broker still has open, or
// returns nil once it has none: a condition for testkit.Eventually.
func (e *testEnv) sessionsEnded() error {
	if n := e.b.Stats().Sessions; n != 0 {
		return fmt.Errorf("%d sessions open, want 0", n)
	}
	return nil
}

// wsURL is the URL of the test server's WebSocket endpoint.
func (e *testEnv) wsURL() string { return "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/ws" }

// dial opens a session and reads its welcome frame.
func (e *testEnv) dial(t testing.TB) *wstest.Client {
	t.Helper()
	return wstest.Dial(t, e.wsURL())
}
