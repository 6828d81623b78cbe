package broker

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// matches returns the patterns in x that match topic, sorted, checking that
// none is reported twice or without subscribers.
func matches[S comparable](t *testing.T, x *patternIndex[S], topic string) []string {
	t.Helper()
	var got []string
	x.match(topic, func(pattern string, subs []S) {
		if len(subs) == 0 {
			t.Errorf("match(%q): pattern %q reported with no subscribers", topic, pattern)
		}
		got = append(got, pattern)
	})
	sort.Strings(got)
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Errorf("match(%q): pattern %q reported twice", topic, got[i])
		}
	}
	return got
}

func TestPatternIndexMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{
			pattern: "prices.*.usd",
			match:   []string{"prices.eur.usd", "prices.usd.usd", "prices.x.usd"},
			noMatch: []string{"prices.eur.gbp", "prices.usd", "prices.a.b.usd", "prices.eur.usd.x", "prices", "usd", "x.eur.usd", "prices.eur.usdx"},
		},
		{
			pattern: "prices.>",
			match:   []string{"prices.a", "prices.a.b", "prices.a.b.c.d", "prices.prices"},
			noMatch: []string{"prices", "price", "pricesx.a", "x.prices.a", "a"},
		},
		{
			pattern: ">",
			match:   []string{"a", "a.b", "prices.eur.usd", segments(128)},
		},
		{
			pattern: "*",
			match:   []string{"a", "prices", "chat:room-42"},
			noMatch: []string{"a.b", "a.b.c"},
		},
		{
			pattern: "a.*.c",
			match:   []string{"a.b.c", "a.c.c", "a.*x.c"},
			noMatch: []string{"a.c", "a.b.c.d", "a.b.d", "b.b.c", "a.b.b.c"},
		},
		{
			pattern: "*.*",
			match:   []string{"a.b", "x.y"},
			noMatch: []string{"a", "a.b.c"},
		},
		{
			pattern: "*.>",
			match:   []string{"a.b", "a.b.c"},
			noMatch: []string{"a"},
		},
		{
			pattern: "a.*.>",
			match:   []string{"a.b.c", "a.b.c.d"},
			noMatch: []string{"a.b", "a", "b.b.c"},
		},
		{
			pattern: "prices.eur.usd", // exact patterns work too
			match:   []string{"prices.eur.usd"},
			noMatch: []string{"prices.eur", "prices.eur.usd.x", "prices.eur.gbp", "prices.eur.usdx"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			if _, err := ValidatePattern(tt.pattern); err != nil {
				t.Fatal(err)
			}
			x := newPatternIndex[int](0)
			if !x.mustInsert(tt.pattern, 1) {
				t.Fatal("insert into an empty index: want new pattern")
			}
			for _, topic := range tt.match {
				if got := matches(t, x, topic); !slices.Equal(got, []string{tt.pattern}) {
					t.Errorf("match(%q) = %q, want [%q]", topic, got, tt.pattern)
				}
			}
			for _, topic := range tt.noMatch {
				if got := matches(t, x, topic); len(got) != 0 {
					t.Errorf("match(%q) = %q, want none", topic, got)
				}
			}
		})
	}
}

// TestPatternIndexOverlap checks a topic matched by many patterns at once,
// against a brute-force matcher.
func TestPatternIndexOverlap(t *testing.T) {
	t.Parallel()
	patterns := []string{
		">", "*", "*.*", "*.*.*", "*.>", "*.*.>",
		"a", "a.b", "a.b.c", "a.>", "a.*", "a.*.c", "a.b.>", "a.b.*", "a.*.>", "*.b.c", "*.b.>", "*.*.c",
		"x.y", "x.>", "a.c", "b.>",
	}
	topics := []string{"a", "b", "a.b", "a.c", "a.b.c", "a.b.d", "a.b.c.d", "x.y", "x.y.z", "q.b.c", "zz"}
	x := newPatternIndex[string](0)
	for i, p := range patterns {
		// Several subscribers per pattern, to check subs is passed whole.
		for j := range i%3 + 1 {
			x.mustInsert(p, fmt.Sprint(p, "#", j))
		}
	}
	if x.len() != len(patterns) {
		t.Fatalf("len() = %d, want %d", x.len(), len(patterns))
	}
	for _, topic := range topics {
		var want []string
		for _, p := range patterns {
			if matchBrute(p, topic) {
				want = append(want, p)
			}
		}
		sort.Strings(want)
		if got := matches(t, x, topic); !slices.Equal(got, want) {
			t.Errorf("match(%q) = %q, want %q", topic, got, want)
		}
		x.match(topic, func(pattern string, subs []string) {
			i := slices.Index(patterns, pattern)
			if len(subs) != i%3+1 {
				t.Errorf("match(%q): %q has %d subscribers, want %d", topic, pattern, len(subs), i%3+1)
			}
		})
	}
}

// matchBrute is a reference matcher: NATS semantics, by splitting.
func matchBrute(pattern, topic string) bool {
	ps, ts := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, p := range ps {
		if p == ">" {
			return len(ts) > i
		}
		if i >= len(ts) || (p != "*" && p != ts[i]) {
			return false
		}
	}
	return len(ps) == len(ts)
}

func TestPatternIndexInsertRemove(t *testing.T) {
	t.Parallel()
	x := newPatternIndex[int](0)
	subsOf := func(pattern, topic string) []int {
		var got []int
		x.match(topic, func(p string, subs []int) {
			if p == pattern {
				got = slices.Sorted(slices.Values(subs))
			}
		})
		return got
	}

	if !x.mustInsert("a.*", 1) {
		t.Error("first insert: want new")
	}
	if x.mustInsert("a.*", 1) {
		t.Error("duplicate insert: want not new")
	}
	if x.mustInsert("a.*", 2) {
		t.Error("second subscriber: want not new")
	}
	if x.mustInsert("a.*", 2) {
		t.Error("duplicate insert: want not new")
	}
	if got := subsOf("a.*", "a.b"); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("subscribers = %v, want [1 2] (no duplicates)", got)
	}
	if !x.mustInsert("a.*.c", 1) || !x.mustInsert("a", 3) || !x.mustInsert("a.>", 4) {
		t.Error("new patterns: want new")
	}
	if x.len() != 4 {
		t.Errorf("len() = %d, want 4", x.len())
	}

	if x.remove("a.*", 1) {
		t.Error("remove one of two: want not empty")
	}
	if got := subsOf("a.*", "a.b"); !slices.Equal(got, []int{2}) {
		t.Errorf("subscribers = %v, want [2]", got)
	}
	if x.remove("a.*", 1) {
		t.Error("remove again: want not empty (2 is still there)")
	}
	if x.remove("a.*", 99) {
		t.Error("remove absent subscriber: want not empty")
	}
	if !x.remove("a.*", 2) {
		t.Error("remove last: want empty")
	}
	if x.len() != 3 {
		t.Errorf("len() = %d, want 3", x.len())
	}
	if got := matches(t, x, "a.b"); !slices.Equal(got, []string{"a.>"}) {
		t.Errorf("match(a.b) = %q, want [a.>]", got)
	}
	// a.* has no subscribers, but its node stays: a.*.c goes through it.
	if x.root.literalChild("a").star == nil {
		t.Error("a.* node pruned while a.*.c still uses it")
	}
	if got := matches(t, x, "a.b.c"); !slices.Equal(got, []string{"a.*.c", "a.>"}) {
		t.Errorf("match(a.b.c) = %q, want [a.*.c a.>]", got)
	}

	// Removing from patterns that are absent changes nothing.
	for _, p := range []string{"a.*", "b", "a.*.c.d", "a.*.d", "*", ">", "a.b"} {
		if !x.remove(p, 1) {
			t.Errorf("remove(%q) of an absent pattern: want empty", p)
		}
	}
	if x.len() != 3 {
		t.Errorf("len() = %d, want 3", x.len())
	}

	if !x.remove("a.*.c", 1) {
		t.Error("want empty")
	}
	if x.root.literalChild("a").star != nil {
		t.Error("a.* node not pruned")
	}
	if !x.remove("a", 3) || !x.remove("a.>", 4) {
		t.Error("want empty")
	}
	if x.len() != 0 {
		t.Errorf("len() = %d, want 0", x.len())
	}
	if !x.root.isEmpty() {
		t.Errorf("root not pruned: %+v", x.root)
	}
	// Reuse after pruning.
	if !x.mustInsert("a.*", 5) {
		t.Error("insert after prune: want new")
	}
	if got := subsOf("a.*", "a.z"); !slices.Equal(got, []int{5}) {
		t.Errorf("subscribers = %v, want [5]", got)
	}
}

// TestPatternIndexManySubscribers crosses indexThreshold both ways, where a
// pattern switches between scanning its slice and its position map.
func TestPatternIndexManySubscribers(t *testing.T) {
	t.Parallel()
	const n = 5 * indexThreshold
	x := newPatternIndex[int](0)
	want := map[int]bool{}
	check := func(step string) {
		t.Helper()
		got := map[int]bool{}
		x.match("p.q", func(_ string, subs []int) {
			for _, s := range subs {
				if got[s] {
					t.Fatalf("%s: subscriber %d twice", step, s)
				}
				got[s] = true
			}
		})
		if !maps.Equal(got, want) {
			t.Fatalf("%s: subscribers %v, want %v", step, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
		var node *patternNode[int]
		if p := x.root.literalChild("p"); p != nil {
			node = p.star
		}
		if len(want) == 0 {
			if node != nil || !x.root.isEmpty() {
				t.Fatalf("%s: node not pruned", step)
			}
			return
		}
		if node.pos != nil {
			if len(node.pos) != len(node.subs) {
				t.Fatalf("%s: pos has %d entries, subs %d", step, len(node.pos), len(node.subs))
			}
			for i, s := range node.subs {
				if node.pos[s] != i {
					t.Fatalf("%s: pos[%d] = %d, want %d", step, s, node.pos[s], i)
				}
			}
		}
	}
	for i := range n {
		x.mustInsert("p.*", i)
		x.mustInsert("p.*", i) // duplicate
		want[i] = true
		check(fmt.Sprint("insert ", i))
	}
	// Remove from the middle, the ends, and absent ones, in a scattered order.
	for k := range n {
		i := (k * 37) % n
		empty := x.remove("p.*", i)
		delete(want, i)
		if empty != (len(want) == 0) {
			t.Fatalf("remove %d: empty = %v with %d left", i, empty, len(want))
		}
		x.remove("p.*", i)     // already gone
		x.remove("p.*", n+100) // never there
		check(fmt.Sprint("remove ", i))
		if k == n/2 { // grow again while half full
			for j := n; j < n+indexThreshold; j++ {
				x.mustInsert("p.*", j)
				want[j] = true
			}
			check("regrow")
		}
	}
	for j := n; j < n+indexThreshold; j++ {
		x.remove("p.*", j)
		delete(want, j)
	}
	check("end")
	if x.len() != 0 {
		t.Errorf("len() = %d, want 0", x.len())
	}
}

// TestPatternIndexClonesPattern checks that the index keeps its own copy of
// a pattern, both the string it reports and the segments it is keyed by, so
// that a pattern that aliases a reused read buffer (a zero-copy parser) is
// neither corrupted nor keeps the buffer alive.
func TestPatternIndexClonesPattern(t *testing.T) {
	t.Parallel()
	buf := []byte("room.*.msg")
	x := newPatternIndex[int](0)
	x.mustInsert(unsafe.String(&buf[0], len(buf)), 1)
	copy(buf, "xxxx.*.xxx")
	var got []string
	x.match("room.1.msg", func(p string, _ []int) { got = append(got, p) })
	if !slices.Equal(got, []string{"room.*.msg"}) {
		t.Errorf("match(room.1.msg) = %q, want [room.*.msg]", got)
	}
	if !x.remove("room.*.msg", 1) || x.len() != 0 || !x.root.isEmpty() {
		t.Error("remove after the buffer changed did not empty the index")
	}
}

func TestPatternIndexConcurrent(t *testing.T) {
	t.Parallel()
	x := newPatternIndex[int](0)
	patterns := []string{"a.*", "a.>", "*.b", ">", "a.b", "a.*.c", "*.*.*", "a.b.>"}
	topics := []string{"a.b", "a.b.c", "x.b", "a.z.c", "q"}
	const workers, rounds, reads = 8, 300, 2000

	// Readers run at least reads matches and until the writers are done,
	// yielding between matches: under -race on a small machine, readers
	// spinning on the read lock slow the writers down a thousandfold.
	var wg, writers sync.WaitGroup
	var done atomic.Bool
	for r := range 4 {
		wg.Go(func() {
			for i := 0; i < reads || !done.Load(); i++ {
				runtime.Gosched()
				x.match(topics[(i+r)%len(topics)], func(pattern string, subs []int) {
					if len(subs) == 0 {
						t.Errorf("pattern %q reported with no subscribers", pattern)
					}
					sum := 0
					for _, s := range subs {
						sum += s // read every element, for the race detector
					}
					_ = sum
				})
				_ = x.len()
			}
		})
	}
	for w := range workers {
		writers.Go(func() {
			for i := range rounds {
				p := patterns[(i+w)%len(patterns)]
				s := w*rounds + i
				x.mustInsert(p, s)
				if i%3 == 0 {
					x.mustInsert(p, s) // duplicate
				}
				if i%2 == 0 {
					x.remove(p, s)
				}
			}
			// Leave nothing behind.
			for i := range rounds {
				x.remove(patterns[(i+w)%len(patterns)], w*rounds+i)
			}
		})
	}
	writers.Wait()
	done.Store(true)
	wg.Wait()
	if n := x.len(); n != 0 {
		t.Errorf("len() = %d after removing everything, want 0", n)
	}
	if !x.root.isEmpty() {
		t.Error("root not pruned after removing everything")
	}
}

func TestPatternIndexMatchNoAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun counts every goroutine's allocations.
	x := newPatternIndex[int](0)
	for i := range 100 {
		x.mustInsert(fmt.Sprintf("prices.%d.*", i), i)
		x.mustInsert(fmt.Sprintf("prices.*.usd%d", i%10), i)
		x.mustInsert(fmt.Sprintf("news.%d.>", i%5), i)
	}
	x.mustInsert(">", -1)
	x.mustInsert("prices.7.usd3", -2)
	for i := range 3 * indexThreshold { // a pattern with a position map
		x.mustInsert("prices.*.usd3", 1000+i)
	}
	n := 0
	fn := func(_ string, subs []int) { n += len(subs) }
	for _, topic := range []string{"prices.7.usd3", "news.3.a.b.c", "orders.none", "prices.none.eur", ""} {
		if allocs := testing.AllocsPerRun(100, func() { x.match(topic, fn) }); allocs != 0 {
			t.Errorf("match(%q) allocates %v times per call, want 0", topic, allocs)
		}
	}
	if n == 0 {
		t.Error("no subscriber matched")
	}
	// Inserting another subscriber into an existing pattern is free too,
	// as long as the slice has room.
	x.mustInsert("prices.1.*", 10_000)
	x.remove("prices.1.*", 10_000)
	if allocs := testing.AllocsPerRun(100, func() {
		x.mustInsert("prices.1.*", 10_000)
		x.remove("prices.1.*", 10_000)
	}); allocs != 0 {
		t.Errorf("insert+remove of an existing pattern allocates %v times, want 0", allocs)
	}
}

// mustInsert inserts into an index with no node bound, where insert
// cannot fail.
func (x *patternIndex[S]) mustInsert(pattern string, s S) bool {
	isNew, err := x.insert(pattern, s)
	if err != nil {
		panic(err)
	}
	return isNew
}

func TestPatternIndexBoundsItsNodes(t *testing.T) {
	x := newPatternIndex[int](5)
	if _, err := x.insert("a.b.*", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := x.insert("a.b.c.d", 2); err != nil { // shares a.b: 2 more nodes
		t.Fatal(err)
	}
	if _, err := x.insert("x.>", 3); !errors.Is(err, ErrNodeFull) {
		t.Fatalf("a pattern needing 2 nodes past the bound: %v, want ErrNodeFull", err)
	}
	if x.size() != 5 || x.len() != 2 {
		t.Fatalf("after a refused insert: %d nodes, %d patterns; want 5 and 2", x.size(), x.len())
	}
	if _, err := x.insert("a.b.*", 4); err != nil { // no new node
		t.Fatalf("another subscriber of an existing pattern: %v", err)
	}
	x.remove("a.b.c.d", 2)
	if x.size() != 3 {
		t.Fatalf("after removing a.b.c.d: %d nodes, want 3", x.size())
	}
	if _, err := x.insert("x.>", 3); err != nil {
		t.Fatalf("x.> after nodes were freed: %v", err)
	}
	x.remove("a.b.*", 1)
	x.remove("a.b.*", 4)
	x.remove("x.>", 3)
	if x.size() != 0 || x.len() != 0 {
		t.Fatalf("an emptied index holds %d nodes, %d patterns", x.size(), x.len())
	}
}
