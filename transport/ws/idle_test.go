package ws_test

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// sessionGoroutines counts the goroutines running a session's code (a
// reader or a writer), from a dump of every goroutine's stack.
func sessionGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("transport/ws.(*conn).")) {
			count++
		}
	}
	return count
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
			h := newHarness(t, config{ws: wsserver.Config{GoroutineReaders: tc.goroutines, OpRate: -1, IPConnRate: -1, IPMaxConns: -1}})
			clients := make([]*client, sessions)
			for i := range clients {
				clients[i], _ = h.dialWelcome(t)
				clients[i].subscribe("idle.t")
			}
			eventually(t, "session goroutines = "+tc.wantText, func() bool { return tc.want(sessionGoroutines()) })

			h.mustPublish(t, "idle.t", `{"n":1}`)
			for i, c := range clients {
				if e := c.expect("message"); e.Offset != 1 {
					t.Fatalf("client %d: message offset %d, want 1", i, e.Offset)
				}
				c.ping(fmt.Sprint("after-", i))
			}
			eventually(t, "session goroutines back to "+tc.wantText, func() bool { return tc.want(sessionGoroutines()) })
		})
	}
}
