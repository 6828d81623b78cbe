package broker_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
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
		if broker.ErrorCode(err) != broker.CodeBadRequest {
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
			case errors.Is(err, broker.ErrNodeFull) && broker.ErrorCode(err) == broker.CodeUnavailable:
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
