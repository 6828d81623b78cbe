package hooks_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend is a test backend: an httptest server that records each
// request and answers with its handler.
type backend struct {
	srv      *httptest.Server
	requests atomic.Int64  // requests received
	arrived  chan struct{} // a value when a request arrives, if none waits
	mu       sync.Mutex
	last     seen // guarded by mu: the last request received
}

// seen is a request as the backend received it.
type seen struct {
	method, path string
	header       http.Header
	body         []byte
}

// newBackend starts a backend that answers with answer. It stops when the
// test ends, after the hooks (created later) are closed.
func newBackend(t testing.TB, answer http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{arrived: make(chan struct{}, 1)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.requests.Add(1)
		b.mu.Lock()
		b.last = seen{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body}
		b.mu.Unlock()
		select {
		case b.arrived <- struct{}{}:
		default:
		}
		answer(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// lastRequest returns the last request the backend received.
func (b *backend) lastRequest() seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// url is the backend's URL for path.
func (b *backend) url(path string) string { return b.srv.URL + path }

// reply answers status with a JSON body.
func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// allow answers {"allow": true}.
var allow = reply(http.StatusOK, `{"allow": true}`)

// newHooks returns the hooks of cfg, closed when the test ends.
func newHooks(t testing.TB, cfg hooks.Config) *hooks.Hooks {
	t.Helper()
	h, err := hooks.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// allHooks is a config with every hook on, at b's /connect, /subscribe,
// /publish and /refresh.
func allHooks(b *backend) hooks.Config {
	return hooks.Config{
		Connect:   b.url("/connect"),
		Subscribe: b.url("/subscribe"),
		Publish:   b.url("/publish"),
		Refresh:   b.url("/refresh"),
	}
}

// wantUnavailable checks that err is a failure as a client sees it, with
// cause among its chain. It may be called from any goroutine.
func wantUnavailable(t testing.TB, err, cause error) {
	t.Helper()
	if err == nil {
		t.Error("err = nil, want backend unavailable")
		return
	}
	if !errors.Is(err, broker.ErrUnavailable) || !errors.Is(err, cause) {
		t.Errorf("err = %v (%v), want one matching broker.ErrUnavailable and %v", err, slog.AnyValue(err), cause)
	}
	ce := broker.ClientError(err)
	if ce.Code != protocol.CodeUnavailable || ce.Message != hooks.UnavailableMessage || err.Error() != hooks.UnavailableMessage {
		t.Errorf("the client is told %s %q (Error %q), want unavailable %q", ce.Code, ce.Message, err.Error(), hooks.UnavailableMessage)
	}
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// logger returns a logger writing text lines to a new buffer.
func logger() (*slog.Logger, *testkit.Buffer) {
	lb := &testkit.Buffer{}
	return slog.New(slog.NewTextHandler(lb, nil)), lb
}
