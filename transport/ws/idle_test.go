package ws_test

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// sessionGoroutines returns the stacks of the goroutines running a
// session's code (a reader or a writer), from a dump of every goroutine.
func sessionGoroutines() [][]byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var stacks [][]byte
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("transport/ws.(*conn).")) {
			stacks = append(stacks, g)
		}
	}
	return stacks
}

// awaitSessionGoroutines waits until the number of session goroutines
// satisfies want and, if it never does within waitTimeout, fails with the
// stacks of the last count so that the goroutine that stayed can be seen.
func awaitSessionGoroutines(t *testing.T, what string, want func(n int) bool) {
	t.Helper()
	testkit.Eventually(t, waitTimeout, func() error {
		stacks := sessionGoroutines()
		if want(len(stacks)) {
			return nil
		}
		shown := stacks[:min(len(stacks), 3)]
		return fmt.Errorf("waiting for %s: %d session goroutines, the first %d:\n%s",
			what, len(stacks), len(shown), bytes.Join(shown, []byte("\n\n")))
	})
}

// TestIdleSessionsRunNoGoroutine checks the footprint of idle sessions:
// with the poller, a subscribed session that has nothing to read or write
// runs no goroutine, and still gets its deliveries and answers its
// commands; with GoroutineReaders each has its reader goroutine. It is
// not parallel: it counts the goroutines of the whole process.
func TestIdleSessionsRunNoGoroutine(t *testing.T) {
	const sessions = 200
	for _, tc := range []struct {
		name       string
		goroutines bool
		want       func(n int) bool
		wantText   string
	}{
		{"poll", false, func(n int) bool { return n == 0 }, "0"},
		{"goroutine-readers", true, func(n int) bool { return n == sessions }, fmt.Sprint(sessions)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, config{ws: wsserver.Config{GoroutineReaders: tc.goroutines, OpLimits: session.OpLimits{OpRate: -1}, Policy: admit.Policy{IPConnRate: -1, IPMaxConns: -1}}})
			clients := make([]*client, sessions)
			for i := range clients {
				clients[i], _ = h.dialWelcome(t)
				clients[i].subscribe("idle.t")
			}
			awaitSessionGoroutines(t, "session goroutines = "+tc.wantText, tc.want)

			h.mustPublish(t, "idle.t", `{"n":1}`)
			for i, c := range clients {
				if e := c.expect("message"); e.Offset != 1 {
					t.Fatalf("client %d: message offset %d, want 1", i, e.Offset)
				}
				c.ping(fmt.Sprint("after-", i))
			}
			awaitSessionGoroutines(t, "session goroutines back to "+tc.wantText, tc.want)
		})
	}
}
