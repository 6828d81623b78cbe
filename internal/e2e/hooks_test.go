package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpapi"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// A slow backend under 1 000 concurrent connects: the backend never sees
// more connect hooks at once than the node's bound, every connect is
// answered (a session, or 503 when its hook could not be asked in time),
// none hangs, and nothing is left running (goleak, in TestMain). The
// timeout leaves every call time to finish, so that no request the node
// gave up on is still running at the backend while the next one starts
// (the bound is the node's: docs/HOOKS.md).
func TestSlowConnectHookUnderAThousandConnects(t *testing.T) {
	t.Parallel()
	const bound, connects = 8, 1000
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-release:
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"allow": true})
	}))
	t.Cleanup(backend.Close)
	t.Cleanup(func() { close(release) })
	hk, err := hooks.New(hooks.Config{Connect: backend.URL, MaxConcurrent: bound, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hk.Close)
	st := memory.New(memory.Config{})
	br := broker.New(broker.Config{}, st, wsserver.Encoder{})
	wsrv := wsserver.New(wsserver.Config{NodeID: "h", CloseTimeout: time.Second, Policy: admit.Policy{IPConnRate: -1, IPMaxConns: -1}, Services: session.Services{Hooks: hk}}, br)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{}, br, wsrv))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = wsrv.Shutdown(ctx)
		srv.Close()
		_ = st.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws"

	var opened, refused atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := 0; i < connects; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := wstest.Open(ctx, url)
			var r *wstest.RefusedError
			switch {
			case err == nil:
				_, err = c.Expect("welcome", time.Now().Add(60*time.Second))
				_ = c.Close()
				if err != nil {
					t.Errorf("a session opened without its welcome: %v", err)
					return
				}
				opened.Add(1)
			case errors.As(err, &r) && r.Status == http.StatusServiceUnavailable && strings.Contains(string(r.Body), "backend unavailable"):
				refused.Add(1)
			default:
				t.Errorf("a connect ended with %v, want a session or 503 backend unavailable", err)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > bound {
		t.Errorf("the backend saw %d connect hooks at once, more than the bound %d", m, bound)
	}
	if opened.Load()+refused.Load() != connects || opened.Load() == 0 {
		t.Errorf("%d sessions and %d refusals of %d connects", opened.Load(), refused.Load(), connects)
	}
	t.Logf("%d sessions, %d refused with 503, at most %d hooks in flight", opened.Load(), refused.Load(), most.Load())
}
