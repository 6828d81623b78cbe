package ws_test

import (
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/session"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// flooder is a session that sends ping commands at a given rate and counts
// what comes back, on goroutines of its own.
type flooder struct {
	c                  *client
	pongs, limited     atomic.Int64
	closeCode          atomic.Int64
	closeReason        atomic.Value // string
	sent               atomic.Int64
	readDone, sendDone chan struct{}
	stop               chan struct{}
}

// startFlood sends cmd at perSecond (in batches every 10ms) until total
// are sent, stop is closed or the server closes.
func startFlood(tb testing.TB, h *harness, cmd string, perSecond, total int) *flooder {
	c, _ := h.dialWelcome(tb)
	f := &flooder{c: c, readDone: make(chan struct{}), sendDone: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(f.readDone)
		for {
			_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			fr, err := readServerFrame(c.r)
			if err != nil {
				return
			}
			switch fr.Header.OpCode {
			case ws.OpClose:
				if len(fr.Payload) >= 2 {
					f.closeCode.Store(int64(binary.BigEndian.Uint16(fr.Payload)))
					f.closeReason.Store(string(fr.Payload[2:]))
				}
				return
			case ws.OpText:
				typ, _, _ := peekMessage(fr.Payload)
				switch typ {
				case "pong", "published":
					f.pongs.Add(1)
				case "error":
					f.limited.Add(1)
				}
			}
		}
	}()
	go func() {
		defer close(f.sendDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		perTick := max(1, perSecond/100)
		for f.sent.Load() < int64(total) {
			select {
			case <-f.stop:
				return
			case <-f.readDone:
				return
			case <-tick.C:
			}
			for i := 0; i < perTick && f.sent.Load() < int64(total); i++ {
				if err := c.tryWriteRaw(textHeader(len(cmd)), []byte(cmd)); err != nil {
					return
				}
				f.sent.Add(1)
			}
		}
	}()
	tb.Cleanup(f.halt)
	return f
}

// halt stops the flood and waits for its goroutines.
func (f *flooder) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.sendDone
	_ = f.c.conn.Close()
	<-f.readDone
}

// TestFloodOfTenThousandOpsPerSecondIsLimited: with the default limits, a
// session that sends 10 000 commands a second gets at most its burst and
// rate answered, `error` `rate_limited` for its allowance of refusals,
// then 1008; meanwhile another session receives every message in order.
func TestFloodOfTenThousandOpsPerSecondIsLimited(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{})
	const (
		// The defaults of ws.Config.
		rate, burst, refusals = 500, 1000, 1000
		messages              = 50
	)
	sub, _ := h.dialWelcome(t)
	sub.subscribe("flood.t")
	offsets := readOffsets(t, sub)

	start := time.Now()
	f := startFlood(t, h, `{"op":"ping","ref":"f"}`, 10000, 20000)
	for i := 1; i <= messages; i++ {
		h.mustPublish(t, "flood.t", strconv.Itoa(i))
		if off := offsets.next(t); off != uint64(i) {
			t.Fatalf("subscriber got offset %d, want %d", off, i)
		}
	}
	<-f.readDone
	elapsed := time.Since(start)
	if code, reason := f.closeCode.Load(), f.closeReason.Load(); code != 1008 || reason != "rate limit exceeded" {
		t.Fatalf("flooder closed with %d %q, want 1008 rate limit exceeded", code, reason)
	}
	pongs, limited := f.pongs.Load(), f.limited.Load()
	maxPongs := int64(burst + rate*elapsed.Seconds() + 1)
	if pongs < burst || pongs > maxPongs {
		t.Errorf("%d commands answered in %v, want between the burst %d and %d", pongs, elapsed, burst, maxPongs)
	}
	maxLimited := int64(refusals + rate/10*elapsed.Seconds() + 1)
	if limited < refusals || limited > maxLimited {
		t.Errorf("%d rate_limited errors in %v, want between %d and %d", limited, elapsed, refusals, maxLimited)
	}
	testkit.Eventually(t, waitTimeout, func() error {
		return errors.Join(h.wantRefused(limit.ReasonOpRate, uint64(limited)), h.wantRefused(limit.ReasonOpAbuse, 1))
	})
	t.Logf("flood: %d sent, %d answered, %d rate_limited, closed after %v", f.sent.Load(), pongs, limited, elapsed)
}

// BenchmarkDeliveryUnderFlood measures publish-to-delivery time to 8
// subscribers: quiet; while another session sends 10 000 publish commands
// a second under the default rate limit (its refusals never closing it,
// so that the flood lasts); and the same flood with no limit. The flood's
// client runs in this process too, so part of what it costs is the
// client's own work.
func BenchmarkDeliveryUnderFlood(b *testing.B) {
	for _, bc := range []struct {
		name  string
		flood bool
		rate  float64
	}{{"quiet", false, 0}, {"flood-10k-limited", true, 0}, {"flood-10k-unlimited", true, -1}} {
		flood := bc.flood
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, config{ws: wsserver.Config{OpLimits: session.OpLimits{OpRefusals: 1 << 30, OpRate: bc.rate}}})
			const subs = 8
			got := make(chan struct{}, subs)
			var wg sync.WaitGroup
			b.Cleanup(wg.Wait) // after the connections close (cleanups run last first)
			for i := 0; i < subs; i++ {
				c, _ := h.dialWelcome(b)
				c.subscribe("bench.t")
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						_ = c.conn.SetReadDeadline(time.Now().Add(time.Minute))
						if _, err := readServerFrame(c.r); err != nil {
							return
						}
						got <- struct{}{}
					}
				}()
				b.Cleanup(func() { _ = c.conn.Close() })
			}
			var f *flooder
			if flood {
				f = startFlood(b, h, `{"op":"publish","topic":"flood.x","data":{"n":1}}`, 10000, 1<<62)
				if bc.rate == 0 {
					testkit.Eventually(b, waitTimeout, func() error {
						if f.limited.Load() == 0 {
							return errors.New("no rate_limited answer yet: the flood has not exhausted its burst")
						}
						return nil
					})
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.publish("bench.t", `1`); err != nil {
					b.Fatal(err)
				}
				for j := 0; j < subs; j++ {
					<-got
				}
			}
			b.StopTimer()
			if f != nil {
				if f.closeCode.Load() != 0 {
					b.Fatalf("the flooder was closed with %d", f.closeCode.Load())
				}
				b.ReportMetric(float64(f.limited.Load())/b.Elapsed().Seconds(), "refused/s")
				b.ReportMetric(float64(f.pongs.Load())/b.Elapsed().Seconds(), "flood-published/s")
				f.halt()
			}
		})
	}
}
