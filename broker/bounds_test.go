package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/ws"
)

// heapInUse returns the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// deepPattern is a wildcard pattern of the given segments with no prefix
// shared with the other i.
func deepPattern(i, segments int) string {
	return fmt.Sprintf("q%05d.", i) + strings.Repeat("a.", segments-2) + ">"
}

// A deep wildcard pattern used to cost a trie node and a map per segment
// (~41 KB for 125 segments, 297 bytes sent). Patterns are bounded in
// depth, per session and per node, so a session cannot make the node hold
// more than its pattern budget.
func TestWildcardPatternsAreBounded(t *testing.T) {
	b, _ := newBroker(t, broker.Config{MaxPatternNodes: 20000}, memory.Config{})
	ctx := context.Background()
	before := heapInUse()

	s := b.NewSession()
	t.Cleanup(s.Close)
	for i := range 1000 {
		err := s.Subscribe(ctx, "", deepPattern(i, 125), nil)
		if broker.ClientError(err).Code != protocol.CodeBadRequest {
			t.Fatalf("a 125-segment pattern: %v, want bad_request", err)
		}
	}
	accepted := 0
	for i := range 1000 {
		err := s.Subscribe(ctx, "", deepPattern(i, 16), nil)
		if err == nil {
			accepted++
			continue
		}
		if !errors.Is(err, broker.ErrTooManySubscriptions) {
			t.Fatalf("pattern %d: %v, want accepted or too many subscriptions", i, err)
		}
	}
	if accepted != 2048/16 {
		t.Fatalf("%d 16-segment patterns accepted, want %d (the session's 2048 segments)", accepted, 2048/16)
	}
	perSession := heapInUse() - before
	t.Logf("one session holding %d 16-segment patterns: %d KB of heap", accepted, perSession/1024)
	if perSession > 1<<20 {
		t.Fatalf("one session holds %d KB of patterns, want at most 1 MB", perSession/1024)
	}

	// Sessions together stop at the node's bound.
	refused := 0
	for n := 1; n < 20; n++ {
		s := b.NewSession()
		t.Cleanup(s.Close)
		for i := range 128 {
			err := s.Subscribe(ctx, "", deepPattern(n*1000+i, 16), nil)
			switch {
			case err == nil:
			case errors.Is(err, broker.ErrNodeFull) && broker.ClientError(err).Code == protocol.CodeUnavailable:
				refused++
			default:
				t.Fatalf("session %d pattern %d: %v", n, i, err)
			}
		}
	}
	st := b.Stats()
	if st.PatternNodes > 20000 || refused == 0 || st.PatternRefusals != uint64(refused) {
		t.Fatalf("%d pattern nodes, %d refused (%d counted); want at most 20000, some refused, all counted", st.PatternNodes, refused, st.PatternRefusals)
	}
	total := heapInUse() - before
	t.Logf("20 sessions at the node's bound of 20000 nodes: %d KB of heap (%d B per node)", total/1024, total/st.PatternNodes)
	if total > 20000*400 {
		t.Fatalf("the node holds %d KB for 20000 pattern nodes, want at most %d KB", total/1024, 20000*400/1024)
	}
}

// Topics a subscribe creates (per-user, per-order) are freed once every
// session has left and their history has expired: a million distinct
// topics churned through leave the heap where it started.
func TestChurnedTopicsAreFreed(t *testing.T) {
	n := 1_000_000
	if raceEnabled || testing.Short() {
		n = 100_000 // make test runs the full size without -race too
	}
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	st := memory.New(memory.Config{HistoryTTL: time.Minute, IdempotencyWindow: time.Minute, Now: clock})
	t.Cleanup(func() { _ = st.Close() })
	b := broker.New(broker.Config{}, st, textEncoder{})
	ctx := context.Background()
	before := heapInUse()
	s := b.NewSession()
	for i := range n {
		topic := "order." + strconv.Itoa(i)
		if err := s.Subscribe(ctx, "", topic, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Unsubscribe(topic); err != nil {
			t.Fatal(err)
		}
		if i%1024 == 1023 {
			drain(s)
		}
	}
	s.Close()
	during := heapInUse() - before
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	st.Sweep()
	after := heapInUse() - before
	t.Logf("%d topics churned: %d KB held before the sweep, %d KB after; the store keeps %d topics", n, during/1024, after/1024, st.Topics())
	if st.Topics() != 0 || after > 2<<20 {
		t.Fatalf("after every session left and the history expired the store keeps %d topics and %d KB, want none and the baseline", st.Topics(), after/1024)
	}
}

// starVariant returns the i-th pattern that matches deep.t.0.1.….13 with
// some segments replaced by "*": distinct for each i below 2^14.
func starVariant(i int) string {
	segs := []string{"deep", "t"}
	for j := range 14 {
		if i&(1<<j) != 0 {
			segs = append(segs, "*")
		} else {
			segs = append(segs, strconv.Itoa(j))
		}
	}
	return strings.Join(segs, ".")
}

// A message matched by many distinct patterns used to be encoded once per
// pattern: 100 sessions × 1 000 patterns and one 3.6 KB publish made the
// heap grow by ~240 MB. Every pattern's frame now shares the encoded
// message; a pattern adds only its frame header and "sub".
func TestManyPatternsShareOneEncodedMessage(t *testing.T) {
	st := memory.New(memory.Config{})
	t.Cleanup(func() { _ = st.Close() })
	b := broker.New(broker.Config{}, st, ws.Encoder{}) // real frame sizes
	ctx := context.Background()
	const sessions, perSession = 100, 128 // 128 × 16 segments: a session's budget
	var all []*broker.Session
	for i := range sessions {
		s := b.NewSession()
		t.Cleanup(s.Close)
		for j := range perSession {
			if err := s.Subscribe(ctx, "", starVariant(i*perSession+j), nil); err != nil {
				t.Fatal(err)
			}
		}
		drain(s)
		all = append(all, s)
	}
	data := json.RawMessage(`"` + strings.Repeat("x", 3600) + `"`)
	before := heapInUse()
	if _, err := b.Publish(ctx, []broker.Publication{{Topic: "deep.t.0.1.2.3.4.5.6.7.8.9.10.11.12.13", Data: data}}); err != nil {
		t.Fatal(err)
	}
	held := heapInUse() - before
	queued := b.Stats().OutboundBytes
	t.Logf("one 3.6 KB message to %d distinct patterns: the heap grew by %d KB, the outbound budget counts %d KB", sessions*perSession, held/1024, queued/1024)
	if held > 4<<20 {
		t.Fatalf("the heap grew by %d KB, want under 4 MB (%d full frames would take %d KB)", held/1024, sessions*perSession, sessions*perSession*3600/1024)
	}
	// The budget counts what the node holds: the shared body once, and
	// each pattern's header and "sub" (under 160 bytes with its queue
	// entries per delivery), not a body per pattern.
	if limit := int64(3600 + sessions*perSession*160); queued > limit {
		t.Fatalf("the outbound budget counts %d KB for the message, want under %d KB (%d KB counts the body once per pattern)", queued/1024, limit/1024, sessions*perSession*3600/1024)
	}
	for i, s := range all {
		if got := s.Outbox().Len(); got != perSession {
			t.Fatalf("session %d got %d frames, want one per pattern (%d)", i, got, perSession)
		}
	}
}

// The outbound queues of a node are bounded together: over the budget, the
// sessions with the fullest queues are cut first, and a session that keeps
// up goes on receiving.
func TestOutboundBudgetCutsTheFullestQueues(t *testing.T) {
	const budget = 1 << 20
	st := memory.New(memory.Config{})
	t.Cleanup(func() { _ = st.Close() })
	b := broker.New(broker.Config{OutboundBytes: budget}, st, ws.Encoder{}) // real frame sizes
	ctx := context.Background()
	fast := b.NewSession()
	t.Cleanup(fast.Close)
	var slow []*broker.Session
	for _, s := range append([]*broker.Session{fast}, make([]*broker.Session, 20)...) {
		if s == nil {
			s = b.NewSession()
			t.Cleanup(s.Close)
			slow = append(slow, s)
		}
		if err := s.Subscribe(ctx, "", "feed.a", nil); err != nil {
			t.Fatal(err)
		}
	}
	fast.Outbox().Drain(nil)
	data := json.RawMessage(`"` + strings.Repeat("x", 10<<10) + `"`)
	for i := range 200 { // 20 slow readers × 200 × 10 KB = 40 MB unbounded
		if _, err := b.Publish(ctx, []broker.Publication{{Topic: "feed.a", Data: data}}); err != nil {
			t.Fatal(err)
		}
		if n := fast.Outbox().Len(); n != 1 {
			t.Fatalf("publish %d: the session that keeps up got %d frames, want 1", i, n)
		}
		fast.Outbox().Drain(nil)
		if used := b.Stats().OutboundBytes; used > budget+11<<10 {
			t.Fatalf("publish %d: %d bytes queued, over the %d budget by more than a frame", i, used, budget)
		}
	}
	stats := b.Stats()
	if stats.BudgetCuts == 0 || stats.SlowConsumers < stats.BudgetCuts {
		t.Fatalf("%d budget cuts, %d slow consumers: want the slow sessions cut and counted", stats.BudgetCuts, stats.SlowConsumers)
	}
	cut := 0
	for _, s := range slow {
		if s.Outbox().Overflowed() {
			cut++
		}
	}
	if cut == 0 || fast.Outbox().Overflowed() {
		t.Fatalf("%d slow sessions cut, the fast one cut: %v", cut, fast.Outbox().Overflowed())
	}
}
