package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidings-io/tidings/client"
	"github.com/tidings-io/tidings/protocol"
)

// publishGate holds the node's publish requests until released, and
// counts them by path.
type publishGate struct {
	mu      sync.Mutex
	byPath  map[string]int
	held    chan struct{} // one per request that arrived while closed
	release chan struct{}
	open    atomic.Bool
	once    sync.Once
}

func newPublishGate() *publishGate {
	return &publishGate{byPath: map[string]int{}, held: make(chan struct{}, 1024), release: make(chan struct{})}
}

func (g *publishGate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/publish" || r.URL.Path == "/v1/publish/batch" {
			g.mu.Lock()
			g.byPath[r.URL.Path]++
			g.mu.Unlock()
			if !g.open.Load() {
				g.held <- struct{}{}
				<-g.release
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (g *publishGate) count(path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byPath[path]
}

// filledClient starts a node behind a gate and a client of it whose
// requests in flight, single publishes to topic, fill the gate (see fill);
// the gate opens when the test ends, before the node stops.
func filledClient(t *testing.T, topic string) (*publishGate, *client.Client, <-chan error) {
	t.Helper()
	g := newPublishGate()
	n := startNode(t, nodeConfig{Wrap: g.wrap})
	t.Cleanup(g.openUp)
	c := newClient(t, n.URL, client.Config{})
	return g, c, g.fill(t, c, topic)
}

// fill sends the client's MaxPublishRequests publishes and waits until
// the node holds them all; their answers arrive on the returned channel.
func (g *publishGate) fill(t *testing.T, c *client.Client, topic string) <-chan error {
	t.Helper()
	done := make(chan error, client.MaxPublishRequests)
	for i := range client.MaxPublishRequests {
		go func() {
			_, err := c.Publish(context.Background(), topic, fmt.Sprintf(`"first %d"`, i))
			done <- err
		}()
	}
	for range client.MaxPublishRequests {
		<-g.held
	}
	return done
}

func (g *publishGate) openUp() {
	g.once.Do(func() {
		g.open.Store(true)
		close(g.release)
	})
}

type publishOutcome struct {
	p   client.Published
	err error
}

// queue starts one Publish per data and waits until all of them wait
// for a request.
func queue(t *testing.T, c *client.Client, topic string, datas []any) []chan publishOutcome {
	t.Helper()
	outs := make([]chan publishOutcome, len(datas))
	for i, d := range datas {
		outs[i] = make(chan publishOutcome, 1)
		go func() {
			p, err := c.Publish(context.Background(), topic, d)
			outs[i] <- publishOutcome{p, err}
		}()
	}
	waitQueued(t, c, len(datas))
	return outs
}

// waitQueued waits until n Publish calls of c wait for a request.
func waitQueued(t *testing.T, c *client.Client, n int) {
	t.Helper()
	eventually(t, func() error {
		if got := client.QueuedPublishes(c); got != n {
			return fmt.Errorf("%d publishes queued, want %d", got, n)
		}
		return nil
	})
}

// Publishes made while the client's requests are in flight go together
// in one batch request, and each gets its own position.
func TestConcurrentPublishesShareRequests(t *testing.T) {
	g, c, first := filledClient(t, "co.a")
	datas := make([]any, 60)
	for i := range datas {
		datas[i] = i
	}
	outs := queue(t, c, "co.a", datas)
	g.openUp()
	for range client.MaxPublishRequests {
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	}
	at := map[uint64]int{} // offset → call
	for i, out := range outs {
		o := <-out
		if _, dup := at[o.p.Offset]; o.err != nil || o.p.Topic != "co.a" || o.p.Offset == 0 || dup {
			t.Fatalf("publish %d answered %+v, %v", i, o.p, o.err)
		}
		at[o.p.Offset] = i
	}
	if singles, batches := g.count("/v1/publish"), g.count("/v1/publish/batch"); singles != client.MaxPublishRequests || batches != 1 {
		t.Fatalf("%d single and %d batch requests, want %d and 1", singles, batches, client.MaxPublishRequests)
	}
	msgs := history(t, c, "co.a")
	if len(msgs) != 64 {
		t.Fatalf("history holds %d messages, want 64", len(msgs))
	}
	for _, m := range msgs {
		if i, ok := at[m.Offset]; ok && string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d holds %s, but call %d was answered that offset", m.Offset, m.Data, i)
		}
	}
}

// A call the broker refuses fails alone: the batch it was in is sent
// again call by call, and every other call is stored once.
func TestCoalescedRefusalFailsOnlyItsCall(t *testing.T) {
	g, c, first := filledClient(t, "cr.a")
	outs := queue(t, c, "cr.a", []any{1, 2, 3})
	bad := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), "cr.a.*", 4) // a pattern is no topic to publish to
		bad <- err
	}()
	waitQueued(t, c, 4)
	g.openUp()
	for range client.MaxPublishRequests {
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	}
	for i, out := range outs {
		if o := <-out; o.err != nil || o.p.Offset == 0 {
			t.Fatalf("publish %d answered %+v, %v", i, o.p, o.err)
		}
	}
	var e *client.Error
	if err := <-bad; !errors.As(err, &e) || e.Code != protocol.CodeBadRequest || e.Status != http.StatusBadRequest {
		t.Fatalf("the publish to a pattern answered %v, want 400 bad_request", err)
	}
	if batches := g.count("/v1/publish/batch"); batches != 1 {
		t.Fatalf("%d batch requests, want 1", batches)
	}
	if msgs := history(t, c, "cr.a"); len(msgs) != client.MaxPublishRequests+3 {
		t.Fatalf("history holds %d messages, want %d: each good call stored once", len(msgs), client.MaxPublishRequests+3)
	}
}

// A call still queued when its context ends returns at once and is never
// sent.
func TestQueuedPublishHonoursItsContext(t *testing.T) {
	g, c, first := filledClient(t, "cc.a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Publish(ctx, "cc.a", "late")
		done <- err
	}()
	waitQueued(t, c, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled publish answered %v, want context.Canceled", err)
	}
	g.openUp()
	for range client.MaxPublishRequests {
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	}
	if msgs := history(t, c, "cc.a"); len(msgs) != client.MaxPublishRequests {
		t.Fatalf("history holds %d messages, want %d: the cancelled call was sent", len(msgs), client.MaxPublishRequests)
	}
}

// With MaxPublishBatch 1 every call is a request of its own.
func TestPublishCoalescingOff(t *testing.T) {
	g := newPublishGate()
	g.openUp()
	n := startNode(t, nodeConfig{Wrap: g.wrap})
	c := newClient(t, n.URL, client.Config{MaxPublishBatch: 1})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if _, err := c.Publish(context.Background(), "off.a", i); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if singles, batches := g.count("/v1/publish"), g.count("/v1/publish/batch"); singles != 16 || batches != 0 {
		t.Fatalf("%d single and %d batch requests, want 16 and 0", singles, batches)
	}
}

// BenchmarkPublishConcurrent: 32 goroutines publishing single messages to
// a node on loopback, with the client coalescing them and without.
func BenchmarkPublishConcurrent(b *testing.B) {
	for _, bc := range []struct {
		name     string
		maxBatch int
	}{{"coalesced", 0}, {"alone", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			n := startNode(b, nodeConfig{})
			c := newClient(b, n.URL, client.Config{MaxPublishBatch: bc.maxBatch})
			data := json.RawMessage(`{"bid":1.08,"ask":1.09}`)
			b.SetParallelism(32 / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Publish(context.Background(), "bench.pub", data); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
