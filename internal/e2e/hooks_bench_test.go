package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpapi"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// hookNode starts a node on the memory store whose connect and publish
// hooks, when on, ask a local backend that allows everything.
func hookNode(b *testing.B, on bool) string {
	b.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"allow": true, "user": "u"})
	}))
	b.Cleanup(backend.Close)
	st := memory.New(memory.Config{})
	br := broker.New(broker.Config{}, st, wsserver.Encoder{})
	cfg := wsserver.Config{NodeID: "h1", CloseTimeout: time.Second, Policy: admit.Policy{IPConnRate: -1, IPMaxConns: -1}}
	if on {
		hk, err := hooks.New(hooks.Config{Connect: backend.URL + "/connect", Publish: backend.URL + "/publish"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(hk.Close)
		cfg.Hooks = hk
	}
	wsrv := wsserver.New(cfg, br)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{}, br, wsrv))
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wsrv.Shutdown(ctx)
		srv.Close()
		_ = st.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws"
}

// withHooksOffAndOn runs bench as the sub-benchmarks "off" and "on", each
// on a hookNode of its own (without hooks, then with them) at url.
func withHooksOffAndOn(b *testing.B, bench func(b *testing.B, url string)) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) { bench(b, hookNode(b, on)) })
	}
}

// BenchmarkConnectHook measures a session's open (upgrade and welcome)
// and close, one at a time, without hooks and with the connect hook
// asking a local backend: connects per second, and what the hook adds.
func BenchmarkConnectHook(b *testing.B) {
	withHooksOffAndOn(b, func(b *testing.B, url string) {
		ctx := context.Background()
		for b.Loop() {
			c, err := wstest.Open(ctx, url)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Expect("welcome", time.Now().Add(10*time.Second)); err != nil {
				b.Fatal(err)
			}
			_ = c.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
	})
}

// BenchmarkPublishHook measures a WebSocket publish until its answer,
// one at a time, without hooks and with the publish hook asking a local
// backend: the latency the hook adds to a publish.
func BenchmarkPublishHook(b *testing.B) {
	withHooksOffAndOn(b, func(b *testing.B, url string) {
		c, err := wstest.Open(context.Background(), url)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		deadline := time.Now().Add(time.Minute)
		if _, err := c.Expect("welcome", deadline); err != nil {
			b.Fatal(err)
		}
		cmd := map[string]any{"op": "publish", "topic": "bench.hook", "data": 1}
		for b.Loop() {
			if err := c.Send(cmd); err != nil {
				b.Fatal(err)
			}
			if f, err := c.Expect("published", deadline); err != nil {
				b.Fatal(f.Raw, err)
			}
		}
	})
}
