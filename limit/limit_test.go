package limit_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/limit"
)

var (
	a1 = netip.MustParseAddr("203.0.113.1")
	a2 = netip.MustParseAddr("203.0.113.2")
)

func TestRateHoldsAndRefuses(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock(time.Unix(1e9, 0))
	l := limit.New(limit.Config{Rate: 2, Burst: 3, Now: clk.Now})
	for i := 0; i < 3; i++ {
		if _, err := l.Acquire(a1); err != nil {
			t.Fatalf("connection %d within the burst: %v", i, err)
		}
	}
	_, err := l.Acquire(a1)
	var ref *limit.Refusal
	if !errors.As(err, &ref) || !errors.Is(err, limit.ErrRate) || ref.RetryAfter != time.Second {
		t.Fatalf("4th connection: %v, want ErrRate with RetryAfter 1s", err)
	}
	if _, err := l.Acquire(a2); err != nil {
		t.Fatalf("another address is not limited by the first: %v", err)
	}
	clk.Add(500 * time.Millisecond) // one token at 2/s
	if _, err := l.Acquire(a1); err != nil {
		t.Fatalf("after the bucket refilled one: %v", err)
	}
	if _, err := l.Acquire(a1); !errors.Is(err, limit.ErrRate) {
		t.Fatalf("then: %v, want ErrRate", err)
	}
}

func TestConcurrentHoldsAndRefuses(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Config{Max: 2})
	r1, err1 := l.Acquire(a1)
	r2, err2 := l.Acquire(a1)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := l.Acquire(a1); !errors.Is(err, limit.ErrConcurrent) {
		t.Fatalf("3rd at once: %v, want ErrConcurrent", err)
	}
	r1()
	r1() // release is idempotent
	r3, err := l.Acquire(a1)
	if err != nil {
		t.Fatalf("after one release: %v", err)
	}
	if _, err := l.Acquire(a1); !errors.Is(err, limit.ErrConcurrent) {
		t.Fatalf("idempotent release freed two slots: %v", err)
	}
	r2()
	r3()
}

func TestIPv6IsLimitedPerSlash64(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Config{Max: 1})
	if _, err := l.Acquire(netip.MustParseAddr("2001:db8:1:2::1")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(netip.MustParseAddr("2001:db8:1:2:ffff::9")); !errors.Is(err, limit.ErrConcurrent) {
		t.Fatalf("same /64: %v, want ErrConcurrent", err)
	}
	if _, err := l.Acquire(netip.MustParseAddr("2001:db8:1:3::1")); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	if _, err := l.Acquire(netip.MustParseAddr("::ffff:203.0.113.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(a1); !errors.Is(err, limit.ErrConcurrent) {
		t.Fatalf("IPv4-mapped and plain IPv4 of one address: %v, want one group", err)
	}
}

func TestIdleAddressesAreForgotten(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock(time.Unix(1e9, 0))
	l := limit.New(limit.Config{Rate: 10, Burst: 10, Max: 5, Now: clk.Now})
	release, err := l.Acquire(a1)
	if err != nil {
		t.Fatal(err)
	}
	rel2, _ := l.Acquire(a2)
	rel2()
	clk.Add(2 * time.Minute)
	_, _ = l.Acquire(netip.MustParseAddr("198.51.100.7")) // triggers the sweep
	if n := l.Len(); n != 2 {
		t.Fatalf("%d groups tracked, want 2: a2 is idle and full, a1 holds a connection", n)
	}
	release()
}

func TestNoLimitAndInvalidAddress(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Config{})
	for i := 0; i < 100; i++ {
		if _, err := l.Acquire(a1); err != nil {
			t.Fatal(err)
		}
	}
	if l.Len() != 0 {
		t.Error("a limiter without limits tracks addresses")
	}
}

// TestInvalidAddressesShareOneGroup: an unknown client address (an
// X-Forwarded-For hop a trusted proxy could not name) is not a way around
// the limits: every unknown client counts in one group.
func TestInvalidAddressesShareOneGroup(t *testing.T) {
	t.Parallel()
	strict := limit.New(limit.Config{Max: 2})
	var releases []func()
	for i := 0; i < 2; i++ {
		release, err := strict.Acquire(netip.Addr{})
		if err != nil {
			t.Fatalf("unknown client %d: %v", i, err)
		}
		releases = append(releases, release)
	}
	if _, err := strict.Acquire(netip.Addr{}); !errors.Is(err, limit.ErrConcurrent) {
		t.Fatalf("third unknown client: %v, want ErrConcurrent (one group for every unknown client)", err)
	}
	if _, err := strict.Acquire(a1); err != nil {
		t.Fatalf("a known address beside them: %v", err)
	}
	releases[0]()
	if _, err := strict.Acquire(netip.Addr{}); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// TestAcquireActiveCountsTheGroup: AcquireActive tells how many
// connections the address's group holds with the new one (an IPv6 /64
// as one), releases and refusals included; with no limit nothing is
// counted.
func TestAcquireActiveCountsTheGroup(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Config{Max: 3})
	var releases []func()
	for i, a := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"} {
		release, active, err := l.AcquireActive(netip.MustParseAddr(a))
		if err != nil || active != i+1 {
			t.Fatalf("connection %d from one /64: active %d, %v; want %d", i, active, err, i+1)
		}
		releases = append(releases, release)
	}
	if _, active, err := l.AcquireActive(netip.MustParseAddr("2001:db8::4")); !errors.Is(err, limit.ErrConcurrent) || active != 0 {
		t.Fatalf("over Max: active %d, %v; want 0, ErrConcurrent", active, err)
	}
	if _, active, err := l.AcquireActive(a1); err != nil || active != 1 {
		t.Fatalf("another address: active %d, %v; want 1", active, err)
	}
	releases[0]()
	releases[0]()
	if _, active, err := l.AcquireActive(netip.MustParseAddr("2001:db8::5")); err != nil || active != 3 {
		t.Fatalf("after one release: active %d, %v; want 3", active, err)
	}
	off := limit.New(limit.Config{})
	if _, active, err := off.AcquireActive(a1); err != nil || active != 0 {
		t.Fatalf("no limits: active %d, %v; want 0, nil", active, err)
	}
}

func TestTallyCountsEachReasonAndIgnoresOthers(t *testing.T) {
	a, b := limit.ReasonOrigin, limit.ReasonHTTPRate
	tally := limit.NewTally(a, b)
	tally.Add(a)
	tally.Add(a)
	tally.Add(limit.ReasonNone)
	tally.Add(limit.Reason(250))
	got := tally.Snapshot()
	if len(got) != 2 || got[a] != 2 || got[b] != 0 {
		t.Fatalf("Snapshot = %v, want map[origin:2 http_rate:0]", got)
	}
	if tally.Count(a) != 2 || tally.Count(limit.Reason(250)) != 0 {
		t.Fatalf("Count = %d, %d", tally.Count(a), tally.Count(limit.Reason(250)))
	}
}

// Every reason has a label of its own: the labels are the metric's.
func TestReasonsHaveDistinctLabels(t *testing.T) {
	seen := map[string]limit.Reason{}
	for r := limit.ReasonNone; r.String() != "none" || r == limit.ReasonNone; r++ {
		if other, ok := seen[r.String()]; ok {
			t.Fatalf("reasons %d and %d share the label %q", other, r, r.String())
		}
		seen[r.String()] = r
	}
	if len(seen) != 18 {
		t.Fatalf("%d labels, want 18 (none and 17 reasons)", len(seen))
	}
}
