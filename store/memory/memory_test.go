package memory_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts storetest.Options) broker.Store {
		s := memory.New(memory.Config{HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestConformanceHistoryFor(t *testing.T) {
	storetest.RunHistoryFor(t, func(t *testing.T, opts storetest.Options) broker.Store {
		s := memory.New(memory.Config{HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL, HistoryFor: opts.HistoryFor})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestClosedStoreRefusesWork(t *testing.T) {
	s := memory.New(memory.Config{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Position(t.Context(), "a.b"); err == nil {
		t.Fatal("Position on a closed store succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// newClocked returns a store with a one-minute history TTL and idempotency
// window on a clock the test moves.
func newClocked(t *testing.T) (*memory.Store, *testkit.Clock) {
	t.Helper()
	c := testkit.NewClock(time.Unix(1_700_000_000, 0))
	s := memory.New(memory.Config{HistoryTTL: time.Minute, IdempotencyWindow: time.Minute, Now: c.Now})
	t.Cleanup(func() { _ = s.Close() })
	return s, c
}

func publishTo(t *testing.T, s *memory.Store, c *testkit.Clock, topic, key string) *broker.Message {
	t.Helper()
	m := &broker.Message{ID: uuid.NewString(), Topic: topic, Time: c.Now(), Data: json.RawMessage(`1`), IdempotencyKey: key}
	if err := s.Publish(t.Context(), []*broker.Message{m}); err != nil {
		t.Fatal(err)
	}
	return m
}

// Per-user and per-order topics come and go: a topic nobody uses any more
// is forgotten once its history and idempotency keys have expired, so the
// store does not grow with every topic it has ever seen.
func TestIdleTopicsAreForgotten(t *testing.T) {
	s, c := newClocked(t)
	for i := range 1000 {
		publishTo(t, s, c, fmt.Sprintf("user.%d", i), "")
	}
	if _, err := s.Position(t.Context(), "order.read-only"); err != nil {
		t.Fatal(err)
	}
	c.Add(30 * time.Second)
	s.Sweep()
	if n := s.Topics(); n != 1001 {
		t.Fatalf("after 30 s the store holds %d topics, want all 1001 (history still live)", n)
	}
	c.Add(31 * time.Second)
	s.Sweep()
	if n := s.Topics(); n != 0 {
		t.Fatalf("after 61 s idle the store holds %d topics, want 0", n)
	}
}

// A topic that an exact subscription watches is kept however long it is
// idle, so its subscribers' offsets go on in the same epoch.
func TestWatchedTopicIsKept(t *testing.T) {
	s, c := newClocked(t)
	if err := s.Watch(t.Context(), "room.1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Watch(t.Context(), "room.>"); err != nil {
		t.Fatal(err)
	}
	first := publishTo(t, s, c, "room.1", "")
	publishTo(t, s, c, "room.2", "")
	c.Add(time.Hour)
	s.Sweep()
	if n := s.Topics(); n != 1 {
		t.Fatalf("the store holds %d topics, want only the watched room.1 (a wildcard watch keeps none)", n)
	}
	if next := publishTo(t, s, c, "room.1", ""); next.Epoch != first.Epoch || next.Offset != 2 {
		t.Fatalf("watched topic went on at %d in epoch %s, want 2 in %s", next.Offset, next.Epoch, first.Epoch)
	}
	s.Unwatch("room.1")
	c.Add(time.Hour)
	s.Sweep()
	if n := s.Topics(); n != 0 {
		t.Fatalf("after the last Unwatch and an idle hour the store holds %d topics, want 0", n)
	}
}

// A topic forgotten and used again starts a new epoch: a client resuming
// from a position of its previous life is told it was not recovered, and
// an old idempotency key is not answered from the old life.
func TestForgottenTopicStartsANewEpoch(t *testing.T) {
	s, c := newClocked(t)
	for range 3 {
		publishTo(t, s, c, "order.42", "")
	}
	last := publishTo(t, s, c, "order.42", "k")
	c.Add(2 * time.Minute)
	s.Sweep()
	for _, since := range []broker.Position{{Offset: last.Offset, Epoch: last.Epoch}, {Offset: 1, Epoch: last.Epoch}} {
		msgs, pos, ok, err := s.Since(t.Context(), "order.42", since)
		if err != nil {
			t.Fatal(err)
		}
		if ok || len(msgs) != 0 || pos.Epoch == last.Epoch || pos.Offset != 0 {
			t.Fatalf("Since(%+v) after the topic was forgotten = %d messages, %+v, recovered %v; want a new epoch at 0, not recovered",
				since, len(msgs), pos, ok)
		}
	}
	again := publishTo(t, s, c, "order.42", "k")
	if again.Duplicate || again.Offset != 1 {
		t.Fatalf("the old key in the new life: offset %d, duplicate %v; want stored at 1", again.Offset, again.Duplicate)
	}
}

// Idempotency keys expire after the window.
func TestIdempotencyKeyExpires(t *testing.T) {
	s, c := newClocked(t)
	if err := s.Watch(t.Context(), "pay.1"); err != nil {
		t.Fatal(err)
	}
	first := publishTo(t, s, c, "pay.1", "k")
	c.Add(59 * time.Second)
	if retry := publishTo(t, s, c, "pay.1", "k"); !retry.Duplicate || retry.ID != first.ID {
		t.Fatalf("a retry within the window was stored again at %d", retry.Offset)
	}
	c.Add(2 * time.Second)
	if late := publishTo(t, s, c, "pay.1", "k"); late.Duplicate || late.Offset != 2 {
		t.Fatalf("a publish after the window: offset %d, duplicate %v; want stored at 2", late.Offset, late.Duplicate)
	}
}

// Publishing while the sweeper forgets topics loses nothing: a publish
// that races the sweeper lands in the record that later reads see.
func TestSweepDuringPublishLosesNothing(t *testing.T) {
	s, c := newClocked(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				s.Sweep()
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for i := range 5000 {
		// Every topic is idle now, so the sweeper may forget the topic
		// while the publish looks it up; the clock stands still until the
		// read below, so it cannot forget it after the publish.
		c.Add(2 * time.Minute)
		m := publishTo(t, s, c, "t."+strconv.Itoa(i%7), "")
		msgs, pos, ok, err := s.Since(t.Context(), m.Topic, broker.Position{Offset: m.Offset - 1, Epoch: m.Epoch})
		if err != nil {
			t.Fatal(err)
		}
		if !ok || len(msgs) != 1 || msgs[0].ID != m.ID {
			t.Fatalf("publish %d at %d in epoch %s: history holds %d messages at %+v (recovered %v), want the one just published",
				i, m.Offset, m.Epoch, len(msgs), pos, ok)
		}
	}
}

// heapInUse returns the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// One publisher writing large messages to many topics used to make the
// node hold them all for the history TTL (~150 MB from 60 KB messages).
// History is bounded node-wide: the oldest messages go first, and the
// newest stay resumable.
func TestHistoryIsBoundedNodeWide(t *testing.T) {
	const budget = 16 << 20
	s := memory.New(memory.Config{HistoryBytes: budget})
	t.Cleanup(func() { _ = s.Close() })
	before := heapInUse()
	data := json.RawMessage(`"` + strings.Repeat("x", 60<<10) + `"`)
	// Only the first and last positions are kept: the test must not hold
	// the messages itself.
	var oldest, newest broker.Message
	for i := range 2000 { // 2000 × 60 KB = 120 MB sent
		m := &broker.Message{ID: uuid.NewString(), Topic: fmt.Sprintf("big.%d", i), Time: time.Now(), Data: append(json.RawMessage(nil), data...)}
		if err := s.Publish(t.Context(), []*broker.Message{m}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			oldest = broker.Message{Topic: m.Topic, Epoch: m.Epoch}
		}
		newest = broker.Message{Topic: m.Topic, Epoch: m.Epoch}
	}
	held := heapInUse() - before
	t.Logf("120 MB published to 2000 topics: history holds %d KB by its measure, the heap grew %d KB, %d messages evicted",
		s.HistoryBytes()/1024, held/1024, s.Evicted())
	if s.HistoryBytes() > budget {
		t.Fatalf("history holds %d bytes, over its budget of %d", s.HistoryBytes(), budget)
	}
	if held > budget+4<<20 {
		t.Fatalf("the heap grew by %d KB, want at most the %d KB budget and some slack", held/1024, budget>>10)
	}
	if s.Evicted() == 0 {
		t.Fatal("nothing was evicted")
	}
	if msgs, _, ok, err := s.Since(t.Context(), newest.Topic, broker.Position{Offset: 0, Epoch: newest.Epoch}); err != nil || !ok || len(msgs) != 1 {
		t.Fatalf("the newest message is not resumable: %d messages, recovered %v, %v", len(msgs), ok, err)
	}
	if _, _, ok, err := s.Since(t.Context(), oldest.Topic, broker.Position{Offset: 0, Epoch: oldest.Epoch}); err != nil || ok {
		t.Fatalf("the oldest message is still resumable (recovered %v, %v): nothing was evicted oldest first", ok, err)
	}
}

// Many topics with one small message each used to hold a ring of
// HistorySize slots and a record apiece that the budget did not count:
// 2.8 MB published to 100 000 topics held 127 MB. Rings grow as messages
// come, and rings and records count against the budget, so the node
// forgets the oldest empty topics too.
func TestManySmallTopicsAreBoundedNodeWide(t *testing.T) {
	const budget = 8 << 20
	s := memory.New(memory.Config{HistoryBytes: budget})
	t.Cleanup(func() { _ = s.Close() })
	before := heapInUse()
	for i := range 100_000 {
		m := &broker.Message{ID: "id", Topic: "small." + strconv.Itoa(i), Time: time.Now(), Data: json.RawMessage(`1`)}
		if err := s.Publish(t.Context(), []*broker.Message{m}); err != nil {
			t.Fatal(err)
		}
	}
	held := heapInUse() - before
	t.Logf("100 000 topics of one message: history holds %d KB by its measure, %d topics, the heap grew %d KB",
		s.HistoryBytes()/1024, s.Topics(), held/1024)
	if s.HistoryBytes() > budget {
		t.Fatalf("history holds %d bytes, over its budget of %d", s.HistoryBytes(), budget)
	}
	if held > 2*budget {
		t.Fatalf("the heap grew by %d KB, want at most twice the %d KB budget", held/1024, budget>>10)
	}
}
