package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
)

// tripCounter is a go-redis hook that counts the publish round trips
// (pipelines of publish script runs) and, when hold is set, holds the
// first one until hold is closed, so that the publishes after it queue up.
type tripCounter struct {
	mu    sync.Mutex
	trips int
	runs  []int // script runs per round trip
	hold  chan struct{}
	held  chan struct{} // closed when the first round trip is held
}

func newTripCounter(hold bool) *tripCounter {
	c := &tripCounter{held: make(chan struct{})}
	if hold {
		c.hold = make(chan struct{})
	}
	return c
}

func (c *tripCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (c *tripCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }

func (c *tripCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		runs := 0
		for _, cmd := range cmds {
			if n := cmd.Name(); n == "evalsha" || n == "eval" {
				runs++
			}
		}
		if runs == 0 {
			return next(ctx, cmds)
		}
		c.mu.Lock()
		c.trips++
		c.runs = append(c.runs, runs)
		first := c.trips == 1
		c.mu.Unlock()
		if first {
			close(c.held)
			if c.hold != nil {
				<-c.hold
			}
		}
		return next(ctx, cmds)
	}
}

// addTo counts the round trips of s: on a cluster, its pipelines to each
// master.
func (c *tripCounter) addTo(t testing.TB, s *Store) {
	t.Helper()
	if s.cluster == nil {
		s.client.AddHook(c)
		return
	}
	err := s.cluster.ForEachMaster(context.Background(), func(_ context.Context, m *goredis.Client) error {
		m.AddHook(c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// want checks that the round trips (on a cluster, pipelines to a master)
// were rounds.
func (c *tripCounter) want(t *testing.T, rounds int) {
	t.Helper()
	if n, runs := c.count(); n != rounds {
		t.Fatalf("%d round trips (script runs per trip %v), want %d", n, runs, rounds)
	}
}

func (c *tripCounter) count() (int, []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trips, append([]int(nil), c.runs...)
}

// openStore opens a store, closed at cleanup, waits until it is healthy
// and loads the publish script (on every master of a cluster).
func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	testkit.Eventually(t, 10*time.Second, s.Healthy)
	if err := publishScript.Load(context.Background(), s.client).Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

func message(topic string) *broker.Message {
	return &broker.Message{ID: uuid.NewString(), Topic: topic, Time: time.Now(), Data: json.RawMessage(`1`)}
}

// heldPublishes publishes first alone, holds its round trip until every
// one of rest has queued, then lets it go, and returns what each of rest
// returned. trips counts the round trips.
func heldPublishes(t *testing.T, s *Store, trips *tripCounter, first []*broker.Message, rest [][]*broker.Message) []error {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	var firstErr error
	wg.Go(func() { firstErr = s.Publish(ctx, first) })
	select {
	case <-trips.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first publish made no round trip")
	}
	errs := make([]error, len(rest))
	for i, msgs := range rest {
		wg.Go(func() { errs[i] = s.Publish(ctx, msgs) })
	}
	co := coalescerOfTopic(t, s, first[0].Topic)
	testkit.Eventually(t, 10*time.Second, func() error {
		co.mu.Lock()
		defer co.mu.Unlock()
		if n := len(co.queue); n != len(rest) {
			return fmt.Errorf("%d publishes queued, want %d", n, len(rest))
		}
		return nil
	})
	close(trips.hold)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("the first publish: %v", firstErr)
	}
	return errs
}

// coalescerOfTopic returns the coalescer a publish to topic goes through.
func coalescerOfTopic(t *testing.T, s *Store, topic string) *coalescer {
	t.Helper()
	co := s.coalescerOf(context.Background(), &pubCall{runs: []*scriptRun{{keys: []string{s.keys(topic)[0]}}}})
	if co == nil {
		t.Fatalf("no coalescer for %s", topic)
	}
	return co
}

// near returns name on a single Redis and, on a cluster, name with a
// suffix that puts it on the master of topic, so that their publishes
// coalesce.
func near(t *testing.T, s *Store, topic, name string) string {
	t.Helper()
	if s.cluster == nil {
		return name
	}
	want := coalescerOfTopic(t, s, topic)
	for k := 0; k < 1000; k++ {
		if n := fmt.Sprintf("%s.%d", name, k); coalescerOfTopic(t, s, n) == want {
			return n
		}
	}
	t.Fatalf("no topic like %s on the master of %s", name, topic)
	return ""
}

// startBoth starts a single Redis and a cluster, for tests run on both.
func startBoth(t *testing.T) map[string]func(Config) Config {
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t)
	return map[string]func(Config) Config{
		"single":  func(c Config) Config { c.URL = srv.URL(); return c },
		"cluster": func(c Config) Config { c.ClusterAddrs = cl.Addrs(); return c },
	}
}

// TestConcurrentPublishesShareRoundTrips: publishes that arrive while a
// round trip is in flight go together in the next one, within
// MaxCoalesce; with coalescing off each makes its own.
func TestConcurrentPublishesShareRoundTrips(t *testing.T) {
	modes := startBoth(t)
	for name, mode := range modes {
		for _, tc := range []struct {
			max   int
			trips int // 1 held + the 31 queued ones in round trips of max
		}{{DefaultMaxCoalesce, 2}, {8, 5}} {
			t.Run(fmt.Sprintf("%s/max=%d", name, tc.max), func(t *testing.T) {
				s := openStore(t, mode(Config{Timeout: 10 * time.Second, MaxCoalesce: tc.max, Prefix: uuid.NewString() + ":"}))
				trips := newTripCounter(true)
				trips.addTo(t, s)
				rest := make([][]*broker.Message, 31)
				for i := range rest {
					rest[i] = []*broker.Message{message(near(t, s, "co.first", fmt.Sprintf("co.%d", i)))}
				}
				for i, err := range heldPublishes(t, s, trips, []*broker.Message{message("co.first")}, rest) {
					if err != nil {
						t.Fatalf("publish %d: %v", i, err)
					}
					if m := rest[i][0]; m.Offset != 1 || m.Epoch == "" {
						t.Fatalf("publish %d stored at %d/%q, want 1", i, m.Offset, m.Epoch)
					}
				}
				trips.want(t, tc.trips)
			})
		}
		t.Run(name+"/off", func(t *testing.T) {
			s := openStore(t, mode(Config{MaxCoalesce: -1, Prefix: uuid.NewString() + ":"}))
			trips := newTripCounter(false)
			trips.addTo(t, s)
			var wg sync.WaitGroup
			errs := make([]error, 32)
			for i := range errs {
				wg.Go(func() {
					errs[i] = s.Publish(context.Background(), []*broker.Message{message(fmt.Sprintf("off.%d", i))})
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if n, _ := trips.count(); n != 32 {
				t.Fatalf("32 publishes with coalescing off made %d round trips, want 32", n)
			}
		})
	}
}

// TestCoalescedFailureIsIsolated: a publish whose script run fails, in a
// round trip shared with others, fails alone; a batch stays all or
// nothing on a single Redis and reports a partial batch on a cluster.
func TestCoalescedFailureIsIsolated(t *testing.T) {
	for name, mode := range startBoth(t) {
		t.Run(name, func(t *testing.T) {
			prefix := uuid.NewString() + ":"
			s := openStore(t, mode(Config{Timeout: 10 * time.Second, MaxCoalesce: DefaultMaxCoalesce, Prefix: prefix}))
			// Every topic on co.first's master, so that all coalesce.
			bad, mixedTopic := near(t, s, "co.first", "co.bad"), near(t, s, "co.first", "co.mixed")
			ok1, ok2, ok3 := near(t, s, "co.first", "co.ok.1"), near(t, s, "co.first", "co.ok.2"), near(t, s, "co.first", "co.ok.3")
			// The bad topic's offset key holds a string: its script run fails.
			if err := s.client.Set(context.Background(), prefix+"{"+bad+"}:meta", "not a hash", 0).Err(); err != nil {
				t.Fatal(err)
			}
			trips := newTripCounter(true)
			trips.addTo(t, s)
			rest := [][]*broker.Message{
				{message(ok1)},
				{message(bad)},
				{message(ok2), message(ok2)},
				{message(mixedTopic), message(bad)},
				{message(ok3)},
			}
			errs := heldPublishes(t, s, trips, []*broker.Message{message("co.first")}, rest)
			for _, i := range []int{0, 2, 4} {
				if errs[i] != nil {
					t.Fatalf("healthy publish %d failed with the broken one: %v", i, errs[i])
				}
				for j, m := range rest[i] {
					if m.Offset != uint64(j+1) {
						t.Fatalf("healthy publish %d message %d at offset %d, want %d", i, j, m.Offset, j+1)
					}
				}
			}
			if errs[1] == nil || rest[1][0].Offset != 0 {
				t.Fatalf("the broken publish returned %v at offset %d, want an error", errs[1], rest[1][0].Offset)
			}
			mixed := rest[3][0]
			if name == "single" {
				if errs[3] == nil || errors.Is(errs[3], broker.ErrPartialBatch) || mixed.Offset != 0 {
					t.Fatalf("a batch with a broken topic returned %v, stored its other at %d; want it refused whole", errs[3], mixed.Offset)
				}
			} else if !errors.Is(errs[3], broker.ErrPartialBatch) || mixed.Offset != 1 {
				t.Fatalf("a batch with a broken topic returned %v, stored its other at %d; want a partial batch, stored at 1", errs[3], mixed.Offset)
			}
			trips.want(t, 2)
		})
	}
}

// TestCoalescedIdempotencyKeys: publishes of one key, coalesced into one
// round trip, store one message; the others answer as it did.
func TestCoalescedIdempotencyKeys(t *testing.T) {
	for name, mode := range startBoth(t) {
		t.Run(name, func(t *testing.T) {
			s := openStore(t, mode(Config{Timeout: 10 * time.Second, MaxCoalesce: DefaultMaxCoalesce, Prefix: uuid.NewString() + ":"}))
			trips := newTripCounter(true)
			trips.addTo(t, s)
			keyed := func() []*broker.Message {
				m := message("co.idem")
				m.IdempotencyKey = "same"
				return []*broker.Message{m}
			}
			first := keyed()
			rest := make([][]*broker.Message, 31)
			for i := range rest {
				rest[i] = keyed()
			}
			errs := heldPublishes(t, s, trips, first, rest)
			f := first[0]
			if f.Duplicate || f.Offset != 1 {
				t.Fatalf("the first publish: offset %d, duplicate %v; want stored at 1", f.Offset, f.Duplicate)
			}
			for i, err := range errs {
				m := rest[i][0]
				if err != nil || !m.Duplicate || m.ID != f.ID || m.Offset != f.Offset || m.Epoch != f.Epoch {
					t.Fatalf("publish %d: %v, %s@%d/%s duplicate %v; want the first's %s@%d/%s",
						i, err, m.ID, m.Offset, m.Epoch, m.Duplicate, f.ID, f.Offset, f.Epoch)
				}
			}
			trips.want(t, 2)
		})
	}
}

// TestClusterCoalescesPerMaster: on a cluster, a round trip held on one
// master holds back the publishes to that master only, and a publish
// over several masters goes at once, alone.
func TestClusterCoalescesPerMaster(t *testing.T) {
	cl := redistest.StartCluster(t)
	s := openStore(t, Config{ClusterAddrs: cl.Addrs(), Timeout: 10 * time.Second, Prefix: uuid.NewString() + ":"})
	var other string
	for k := 0; other == ""; k++ {
		if n := fmt.Sprintf("pm.other.%d", k); coalescerOfTopic(t, s, n) != coalescerOfTopic(t, s, "pm.first") {
			other = n
		}
	}
	trips := newTripCounter(true)
	trips.addTo(t, s)
	ctx := context.Background()
	held := make(chan error, 1)
	go func() { held <- s.Publish(ctx, []*broker.Message{message("pm.first")}) }()
	<-trips.held
	queued := make(chan error, 1)
	go func() { queued <- s.Publish(ctx, []*broker.Message{message(near(t, s, "pm.first", "pm.same"))}) }()
	co := coalescerOfTopic(t, s, "pm.first")
	testkit.Eventually(t, 10*time.Second, func() error {
		co.mu.Lock()
		defer co.mu.Unlock()
		if len(co.queue) != 1 {
			return fmt.Errorf("%d publishes queued on the held master, want 1", len(co.queue))
		}
		return nil
	})
	// Another master's publish, and one over both masters, go meanwhile.
	if err := s.Publish(ctx, []*broker.Message{message(other)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, []*broker.Message{message(other), message(near(t, s, "pm.first", "pm.both"))}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-queued:
		t.Fatalf("the publish behind the held master returned %v before it was let go", err)
	default:
	}
	close(trips.hold)
	if err := errors.Join(<-held, <-queued); err != nil {
		t.Fatal(err)
	}
}
