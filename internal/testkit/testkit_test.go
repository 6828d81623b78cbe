package testkit_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
)

// recorder is a testing.TB that records Fatalf instead of ending the test.
// Its Fatalf returns, so Eventually must return after calling it.
type recorder struct {
	testing.TB
	helper bool
	fatals []string
}

func (r *recorder) Helper() {
	r.helper = true
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

func newRecorder(t *testing.T) *recorder { return &recorder{TB: t} }

func TestEventuallyReturnsOnceCondSucceeds(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	tries := 0
	testkit.Eventually(r, 5*time.Second, func() error {
		tries++
		if tries < 4 {
			return fmt.Errorf("try %d, want 4", tries)
		}
		return nil
	})
	if len(r.fatals) != 0 {
		t.Fatalf("Eventually failed the test: %q", r.fatals)
	}
	if tries != 4 {
		t.Fatalf("cond was called %d times, want 4 (until it returned nil)", tries)
	}
	if !r.helper {
		t.Error("Eventually did not call t.Helper")
	}
}

func TestEventuallyReturnsAtOnceWhenCondHolds(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	tries := 0
	testkit.Eventually(r, 0, func() error { tries++; return nil })
	if len(r.fatals) != 0 || tries != 1 {
		t.Fatalf("cond called %d times, failures %q; want 1 call and no failure", tries, r.fatals)
	}
}

func TestEventuallyFailsWithTheLastError(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	const within = 100 * time.Millisecond
	tries := 0
	start := time.Now()
	testkit.Eventually(r, within, func() error {
		tries++
		return fmt.Errorf("%d sessions, want 0", tries)
	})
	took := time.Since(start)
	if len(r.fatals) != 1 {
		t.Fatalf("Fatalf called %d times (%q), want once", len(r.fatals), r.fatals)
	}
	want := fmt.Sprintf("not within %v: %d sessions, want 0", within, tries)
	if r.fatals[0] != want {
		t.Errorf("failed with %q, want %q (the last error)", r.fatals[0], want)
	}
	if took < within {
		t.Errorf("gave up after %v, before %v passed", took, within)
	}
	// At least the first try and the one at the deadline; pauses of 1 ms
	// and more leave no room for a busy loop.
	if tries < 2 || tries > 100 {
		t.Errorf("cond was called %d times in %v, want a few polls at least 1 ms apart", tries, within)
	}
	if !r.helper {
		t.Error("Eventually did not call t.Helper")
	}
}

func TestEventuallyTriesAtLeastOnce(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	errStill := errors.New("still down")
	tries := 0
	testkit.Eventually(r, 0, func() error { tries++; return errStill })
	if tries != 1 {
		t.Errorf("cond was called %d times with within 0, want 1", tries)
	}
	if len(r.fatals) != 1 || !strings.HasSuffix(r.fatals[0], errStill.Error()) {
		t.Errorf("failed with %q, want one failure ending in %q", r.fatals, errStill)
	}
}

func TestClockMovesOnlyWhenAdded(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	c := testkit.NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want %v", got, start)
	}
	c.Add(90 * time.Second)
	if got, want := c.Now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("after Add(90s): %v, want %v", got, want)
	}
}

func TestBufferTakesConcurrentWrites(t *testing.T) {
	var b testkit.Buffer
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got := len(b.String()); got != 400 {
		t.Fatalf("%d bytes, want 400", got)
	}
}

func TestDotted(t *testing.T) {
	got := testkit.Dotted([]string{"a", "b"}, 2)
	want := []string{"a", "a.a", "a.b", "b", "b.a", "b.b"}
	if !slices.Equal(got, want) {
		t.Errorf("Dotted = %q, want %q", got, want)
	}
}

func TestPrices(t *testing.T) {
	a, b := testkit.Prices(1, 4096), testkit.Prices(2, 4096)
	if len(a) < 4096 || !json.Valid([]byte(a)) || a == b || a != testkit.Prices(1, 4096) {
		t.Errorf("Prices(1, 4096): %d bytes, valid %v, same as seq 2 %v", len(a), json.Valid([]byte(a)), a == b)
	}
}
