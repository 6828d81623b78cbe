package ws_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
	wsserver "github.com/tidings-io/tidings/transport/ws"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// bytesIn reads the server's inbound byte counter (tidings.ws.io,
// direction in) from reader.
func bytesIn(t testing.TB, reader *sdkmetric.ManualReader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "tidings.ws.io" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := dp.Attributes.Value("direction"); v.AsString() == "in" {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// heapInUse returns the bytes of heap in use once garbage is collected
// (twice: a sync.Pool keeps its items over one collection).
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// partialBudget is what a session waiting for the rest of a frame may
// hold on the heap beyond an idle session: the bytes that arrived in its
// message buffer (at least 512 bytes), the record of the split frame, and
// room for the runtime's own (a goroutine's record outlives it). That is
// less than one read buffer, and a 16th of the 64 KiB declared. Measured
// here: 0.7–1.6 KiB.
const partialBudget = 4 << 10

// TestPartialFrameHoldsOnlyWhatArrived: frame headers that declare the
// largest message (65 536 bytes) followed by one byte of it make the
// server hold about what arrived, not what was declared, and, with the
// poller, no goroutine: each session's split frame waits in a small
// record of its own. Every frame completed later is still answered, as
// it was sent. It is not parallel: it measures the whole process's heap
// and goroutines.
func TestPartialFrameHoldsOnlyWhatArrived(t *testing.T) {
	const sessions = 200
	for _, tc := range []struct {
		name       string
		goroutines bool
	}{{"poll", false}, {"goroutine-readers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
			h := newHarness(t, config{ws: wsserver.Config{
				MeterProvider:    mp,
				GoroutineReaders: tc.goroutines,
				OpLimits:         session.OpLimits{OpRate: -1},
				Policy: admit.Policy{
					IPConnRate: -1,
					IPMaxConns: -1,
				},
			}})
			idleGoroutines := 0
			if tc.goroutines {
				idleGoroutines = sessions // each session's reader
			}
			clients := make([]*client, sessions)
			frames := make([][]byte, sessions)
			for i := range clients {
				clients[i], _ = h.dialWelcome(t)
				// A command of exactly the largest message size: its
				// header has the 64-bit length (14 bytes with the mask).
				frames[i] = maskedFrames(ws.NewTextFrame(paddedPing(strconv.Itoa(i), 65536)))
			}
			const sent = 14 + 1 // the header and one byte
			awaitSessionGoroutines(t, fmt.Sprintf("%d idle session goroutines", idleGoroutines), func(n int) bool { return n == idleGoroutines })
			in0 := bytesIn(t, reader)
			heap0, g0 := heapInUse(), runtime.NumGoroutine()

			for i, c := range clients {
				_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
				if _, err := c.conn.Write(frames[i][:sent]); err != nil {
					t.Fatal(err)
				}
			}
			testkit.Eventually(t, waitTimeout, func() error {
				if n := bytesIn(t, reader) - in0; n < sessions*sent {
					return fmt.Errorf("the server read %d bytes of the partial frames, want %d", n, sessions*sent)
				}
				return nil
			})
			testkit.Eventually(t, waitTimeout, func() error {
				if n := len(sessionGoroutines()); n != idleGoroutines {
					return fmt.Errorf("%d session goroutines wait for the rest of their frames, want %d", n, idleGoroutines)
				}
				return nil
			})
			heap1, g1 := heapInUse(), runtime.NumGoroutine()
			held := int64(heap1) - int64(heap0)
			t.Logf("%d sessions sent %d bytes each (%d in all): heap in use %+d bytes (%+d per session; declared %d each), goroutines %+d, session goroutines %d",
				sessions, sent, sessions*sent, held, held/sessions, 65536, g1-g0, len(sessionGoroutines()))
			if held > sessions*partialBudget {
				t.Errorf("heap in use grew by %d bytes for %d partial frames of %d bytes: want under %d (%d per session)",
					held, sessions, sent, sessions*partialBudget, partialBudget)
			}
			if g1-g0 > 10 {
				t.Errorf("the process runs %d goroutines more with the partial frames", g1-g0)
			}

			// The rest of each frame: in one write for half the sessions,
			// in pieces of 1000 bytes for the others. Every command is
			// answered, as sent.
			var wg sync.WaitGroup
			errs := make(chan error, sessions)
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rest, piece := frames[i][sent:], len(frames[i])
					if i%2 == 1 {
						piece = 1000
					}
					for len(rest) > 0 {
						n := min(piece, len(rest))
						_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
						if _, err := c.conn.Write(rest[:n]); err != nil {
							errs <- fmt.Errorf("session %d: %w", i, err)
							return
						}
						rest = rest[n:]
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for i, c := range clients {
				if e := c.expect("pong"); e.Ref != strconv.Itoa(i) {
					t.Fatalf("session %d: pong for %q", i, e.Ref)
				}
			}
		})
	}
}

// TestStalledFrameIsCut: a session that stops sending in the middle of a
// frame (its header or its payload) is cut like a silent one, two
// heartbeat intervals after its last byte (plus the event loop's tick, a
// 32nd of an interval).
func TestStalledFrameIsCut(t *testing.T) {
	t.Parallel()
	const beat = 300 * time.Millisecond
	frame := maskedFrames(ws.NewTextFrame(paddedPing("stalled", 1000)))
	for _, readers := range []struct {
		name       string
		goroutines bool
	}{{"poll", false}, {"goroutine-readers", true}} {
		h := newHarness(t, config{ws: wsserver.Config{Heartbeat: beat, GoroutineReaders: readers.goroutines}})
		for _, stall := range []struct {
			name string
			sent int
		}{{"in-header", 3}, {"in-payload", 100}} {
			t.Run(readers.name+"/"+stall.name, func(t *testing.T) {
				t.Parallel()
				c, _ := h.dialWelcome(t)
				_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
				if _, err := c.conn.Write(frame[:stall.sent]); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				c.expectCut() // the server's pings, then the end
				// The bound, with room for a loaded machine.
				if took, bound := time.Since(start), 2*beat+beat/32; took > bound+beat {
					t.Errorf("cut %v after the last byte, want within %v", took, bound)
				}
			})
		}
	}
}
