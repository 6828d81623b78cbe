package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
)

// events is a Deliverer that records what it is given, as text, and
// signals each event.
type events struct {
	mu   sync.Mutex
	seen []string
	more chan struct{}
}

func newEvents() *events { return &events{more: make(chan struct{}, 1)} }

func (e *events) add(s string) {
	e.mu.Lock()
	e.seen = append(e.seen, s)
	e.mu.Unlock()
	select {
	case e.more <- struct{}{}:
	default:
	}
}

func (e *events) Deliver(m *broker.Message) { e.add("msg " + m.Topic + " " + itoa(m.Offset)) }

func (e *events) Reset(topic string, pos broker.Position, reason string) {
	e.add("reset " + topic + " " + itoa(pos.Offset) + " " + reason)
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// await waits until the events end with want, or fails after within.
func (e *events) await(t *testing.T, within time.Duration, want ...string) {
	t.Helper()
	deadline := time.After(within)
	for {
		e.mu.Lock()
		seen := append([]string(nil), e.seen...)
		e.mu.Unlock()
		if len(seen) >= len(want) && slices.Equal(seen[len(seen)-len(want):], want) {
			return
		}
		select {
		case <-e.more:
		case <-deadline:
			t.Fatalf("events %q, want them to end with %q", seen, want)
		}
	}
}

// stalledStore returns a store that reaches Redis through a link, with a
// long timeout, so that anything that waits on a stalled Redis waits for
// much longer than the test allows.
func stalledStore(t *testing.T) (*Store, *redistest.Link, *events) {
	t.Helper()
	srv := redistest.Start(t)
	link := redistest.StartLink(t, srv.Addr())
	s, err := New(Config{URL: link.URL(), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		link.Restore()
		_ = s.Close()
	})
	ev := newEvents()
	s.Listen(ev)
	testkit.Eventually(t, 10*time.Second, s.Healthy) // polling the health loop: no event to wait on
	return s, link, ev
}

// within runs f and fails the test unless it returns within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s waited on a stalled Redis", what)
	}
}

// Unwatch is called by session writers when a session ends: it must not
// wait on Redis, and the unsubscription it leaves is sent once Redis
// answers again.
func TestUnwatchDoesNotWaitForRedis(t *testing.T) {
	s, link, _ := stalledStore(t)
	ctx := context.Background()
	if err := s.Watch(ctx, "u.a"); err != nil {
		t.Fatal(err)
	}
	link.Stall()
	within(t, 5*time.Second, "Unwatch", func() { s.Unwatch("u.a") })
	link.Restore()
	testkit.Eventually(t, 40*time.Second, func() error { // polling Redis: no event to wait on
		n, err := s.client.PubSubNumSub(ctx, s.keys("u.a")[2]).Result()
		if err != nil || n[s.keys("u.a")[2]] != 0 {
			return fmt.Errorf("the channel still has %v subscribers (%v)", n, err)
		}
		return nil
	})
}

// A gap starts a repair that reads history; the relay's receive loop does
// not wait for it: other topics are delivered meanwhile, and the topic's
// later messages wait for the repair and follow it in order.
func TestGapRepairDoesNotHoldTheReceiveLoop(t *testing.T) {
	s, link, ev := stalledStore(t)
	ctx := context.Background()
	first := &broker.Message{ID: uuid.NewString(), Topic: "r.a", Time: time.Now(), Data: json.RawMessage(`1`)}
	if err := s.Publish(ctx, []*broker.Message{first}); err != nil {
		t.Fatal(err)
	}
	s.relay.startTrack("r.a", broker.Position{Offset: 1, Epoch: first.Epoch}, false)
	msg := func(topic string, offset uint64) *broker.Message {
		return &broker.Message{ID: uuid.NewString(), Topic: topic, Offset: offset, Epoch: first.Epoch, Time: time.Now(), Data: json.RawMessage(`1`)}
	}
	link.Stall()
	within(t, 5*time.Second, "the receive loop", func() {
		s.relay.process(msg("r.a", 3)) // offset 2 was missed: a repair reads history
		s.relay.process(msg("r.a", 4)) // waits for the repair
		s.relay.process(msg("r.b", 1)) // another topic goes on
	})
	ev.await(t, 5*time.Second, "msg r.b 1")
	link.Restore()
	// History has only offset 1: the repair announces the gap to 2, then
	// delivers what waited, in order.
	ev.await(t, 40*time.Second, "msg r.b 1", "reset r.a 2 gap", "msg r.a 3", "msg r.a 4")
}

// The track of a topic orders the deliveries of wildcard subscriptions
// too: when the topic's last exact subscription ends, a matching wildcard
// subscription still learns of a new epoch and of gaps.
func TestWildcardKeepsTheTrackAfterTheLastExactWatch(t *testing.T) {
	s, _, ev := stalledStore(t)
	ctx := context.Background()
	for _, p := range []string{"k.*", "k.a"} {
		if err := s.Watch(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	first := &broker.Message{ID: uuid.NewString(), Topic: "k.a", Time: time.Now(), Data: json.RawMessage(`1`)}
	if err := s.Publish(ctx, []*broker.Message{first}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 10*time.Second, "msg k.a 1")
	s.Unwatch("k.a")
	// Redis lost the topic: its next message starts a new epoch.
	s.relay.process(&broker.Message{ID: uuid.NewString(), Topic: "k.a", Offset: 1, Epoch: "fresh", Time: time.Now(), Data: json.RawMessage(`2`)})
	ev.await(t, 10*time.Second, "msg k.a 1", "reset k.a 0 history_lost", "msg k.a 1")
}

// A topic unwatched and watched again while a repair runs keeps its one
// track: a second track would deliver what the repair delivers too.
func TestRewatchDuringARepairDeliversOnce(t *testing.T) {
	s, link, ev := stalledStore(t)
	ctx := context.Background()
	if err := s.Watch(ctx, "d.a"); err != nil {
		t.Fatal(err)
	}
	first := &broker.Message{ID: uuid.NewString(), Topic: "d.a", Time: time.Now(), Data: json.RawMessage(`1`)}
	if err := s.Publish(ctx, []*broker.Message{first}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 10*time.Second, "msg d.a 1")
	third := &broker.Message{ID: uuid.NewString(), Topic: "d.a", Offset: 3, Epoch: first.Epoch, Time: time.Now(), Data: json.RawMessage(`3`)}
	link.Stall()
	s.relay.process(third) // offset 2 was missed: the repair waits on Redis
	s.Unwatch("d.a")
	s.relay.process(third) // the channel of a new watch relays it again
	link.Restore()
	ev.await(t, 40*time.Second, "msg d.a 1", "reset d.a 2 gap", "msg d.a 3")
	// Let anything still running finish: a later message arrives after it.
	s.relay.process(&broker.Message{ID: uuid.NewString(), Topic: "d.a", Offset: 4, Epoch: first.Epoch, Time: time.Now(), Data: json.RawMessage(`4`)})
	ev.await(t, 10*time.Second, "msg d.a 1", "reset d.a 2 gap", "msg d.a 3", "msg d.a 4")
}

// The wildcards key can read absent while wildcard subscriptions exist (a
// flushed master, a pause longer than its TTL); publishers keep the
// wildcard channels until it has read absent for wildcardsLinger.
func TestWildcardsFlagOutlivesAMissingKey(t *testing.T) {
	s := &Store{}
	start := time.Unix(1_000, 0)
	steps := []struct {
		present bool
		after   time.Duration
		want    bool
	}{
		{present: false, after: 0, want: false},
		{present: true, after: time.Second, want: true},
		{present: false, after: 1500 * time.Millisecond, want: true},
		{present: false, after: 4 * time.Second, want: true}, // absent for 2.5 s
		{present: true, after: 4500 * time.Millisecond, want: true},
		{present: false, after: 5 * time.Second, want: true},
		{present: false, after: 8 * time.Second, want: false}, // absent for 3 s
		{present: true, after: 9 * time.Second, want: true},
	}
	for i, st := range steps {
		s.noteWildcards(st.present, start.Add(st.after))
		if got := s.wildcardsSeen.Load(); got != st.want {
			t.Fatalf("step %d (present %v at +%v): flag %v, want %v", i, st.present, st.after, got, st.want)
		}
	}
}

// A publisher that reads the wildcards key as absent just after it was
// lost still publishes on the wildcard channel: a wildcard subscriber on
// another node misses nothing.
func TestClusterWildcardDeliveryOutlivesTheLostKey(t *testing.T) {
	cl := redistest.StartCluster(t)
	open := func() (*Store, *events) {
		s, err := New(Config{ClusterAddrs: cl.Addrs()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		ev := newEvents()
		s.Listen(ev)
		testkit.Eventually(t, 10*time.Second, s.Healthy) // polling the health loop: no event to wait on
		return s, ev
	}
	sub, ev := open()
	pub, _ := open()
	ctx := context.Background()
	if err := sub.Watch(ctx, "lk.*"); err != nil {
		t.Fatal(err)
	}
	if !pub.wildcardsSeen.Load() {
		t.Fatal("the publisher has not seen the wildcards key after Watch returned")
	}
	if err := pub.client.Del(ctx, pub.wildcardsKey()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.refreshWildcards(ctx); err != nil {
		t.Fatal(err)
	}
	m := &broker.Message{ID: uuid.NewString(), Topic: "lk.a", Time: time.Now(), Data: json.RawMessage(`1`)}
	if err := pub.Publish(ctx, []*broker.Message{m}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 10*time.Second, "msg lk.a 1")
}

// TestClusterFirstWildcardWatchOutlastsAShortTimeout: the first wildcard
// watch of a node on a cluster waits a second for every node to read the
// wildcards mark; a Timeout of a second or less bounds the Redis work,
// not that wait, so the watch succeeds.
func TestClusterFirstWildcardWatchOutlastsAShortTimeout(t *testing.T) {
	cl := redistest.StartCluster(t)
	s, err := New(Config{ClusterAddrs: cl.Addrs(), Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	testkit.Eventually(t, 10*time.Second, s.Healthy) // polling the health loop: no event to wait on
	if err := s.Watch(context.Background(), "st.*"); err != nil {
		t.Fatalf("the first wildcard watch with a 500ms Timeout: %v", err)
	}
	if !s.wildcardsSeen.Load() {
		t.Fatal("the node has not marked its wildcard watch")
	}
}
