package limit_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/limit"
)

// fail counts n failures of a and returns the last answer.
func fail(f *limit.Failures, a netip.Addr, n int) (time.Duration, bool) {
	var d time.Duration
	var blocked bool
	for i := 0; i < n; i++ {
		d, blocked = f.Fail(a)
	}
	return d, blocked
}

// TestFailuresBlockWithAGrowingBackoff: Max failures block the address
// for Backoff, the next block lasts twice as long, and so on up to
// MaxBackoff; other addresses are not affected.
func TestFailuresBlockWithAGrowingBackoff(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	f := limit.NewFailures(limit.FailureConfig{Max: 3, Window: time.Minute, Backoff: time.Second, MaxBackoff: 4 * time.Second, Now: clk.Now})
	if _, blocked := fail(f, a1, 2); blocked {
		t.Fatal("blocked after 2 failures, want after 3")
	}
	if _, blocked := f.Blocked(a1); blocked {
		t.Fatal("Blocked after 2 failures")
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if i > 0 {
			fail(f, a1, 2)
		}
		d, blocked := f.Fail(a1)
		if !blocked || d != want {
			t.Fatalf("block %d: Fail = %v, %v; want blocked for %v", i+1, d, blocked, want)
		}
		if d, blocked := f.Blocked(a1); !blocked || d != want {
			t.Fatalf("block %d: Blocked = %v, %v; want %v", i+1, d, blocked, want)
		}
		if _, blocked := f.Blocked(a2); blocked {
			t.Fatalf("block %d: another address is blocked", i+1)
		}
		clk.Add(want)
		if _, blocked := f.Blocked(a1); blocked {
			t.Fatalf("block %d: still blocked once it has passed", i+1)
		}
	}
}

// TestFailuresOutsideTheWindowAreForgotten: failures spread wider than
// Window never block, and a quiet address starts again from Backoff.
func TestFailuresOutsideTheWindowAreForgotten(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	f := limit.NewFailures(limit.FailureConfig{Max: 3, Window: time.Minute, Backoff: time.Second, MaxBackoff: time.Hour, Now: clk.Now})
	for i := 0; i < 10; i++ {
		fail(f, a1, 2)
		clk.Add(time.Minute)
	}
	if _, blocked := f.Blocked(a1); blocked {
		t.Fatal("blocked by failures never 3 within a minute")
	}
	if d, _ := fail(f, a1, 3); d != time.Second {
		t.Fatalf("first block %v, want 1s", d)
	}
	clk.Add(time.Second)
	if d, _ := fail(f, a1, 3); d != 2*time.Second {
		t.Fatalf("second block %v, want 2s", d)
	}
	clk.Add(2*time.Second + time.Hour)
	if d, _ := fail(f, a1, 3); d != time.Second {
		t.Fatalf("block after an hour of quiet %v, want 1s again", d)
	}
}

// TestFailuresAreBoundedInMemory: an attacker with many addresses cannot
// grow the table beyond MaxAddrs; the oldest records go first.
func TestFailuresAreBoundedInMemory(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	f := limit.NewFailures(limit.FailureConfig{Max: 2, MaxAddrs: 100, Now: clk.Now})
	fail(f, a1, 2)
	for i := 0; i < 10000; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		f.Fail(a)
		if i == 0 {
			// a1, the oldest, is still remembered and blocked.
			if _, blocked := f.Blocked(a1); !blocked {
				t.Fatal("a1 not blocked")
			}
		}
	}
	if n := f.Len(); n > 100 {
		t.Fatalf("%d groups remembered, want at most 100", n)
	}
	// IPv6 addresses count by /64: one group however many addresses.
	for i := 0; i < 1000; i++ {
		f.Fail(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i), 14: byte(i >> 8)}))
	}
	if _, blocked := f.Blocked(netip.MustParseAddr("2001:db8::ffff")); !blocked {
		t.Error("an IPv6 /64 with 1000 failures is not blocked")
	}
	// Every unknown client shares one group.
	fail(f, netip.Addr{}, 2)
	if _, blocked := f.Blocked(netip.Addr{}); !blocked {
		t.Error("the unknown-address group is not blocked")
	}
}
