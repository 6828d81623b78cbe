package gate_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/gate"
	"go.uber.org/goleak"
)

func TestGateAdmitsUntilClosedAndWaitsForWhatItAdmitted(t *testing.T) {
	var g gate.Gate
	if g.Closed() {
		t.Fatal("a new gate is closed")
	}
	if !g.Enter() {
		t.Fatal("an open gate refused a unit")
	}
	g.Close()
	g.Close()
	if !g.Closed() {
		t.Fatal("Closed = false after Close")
	}
	if g.Enter() {
		t.Fatal("a closed gate admitted a unit")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a unit inside = %v, want the context's deadline", err)
	}
	waited := make(chan error)
	go func() { waited <- g.Wait(context.Background()) }()
	g.Leave()
	if err := <-waited; err != nil {
		t.Fatalf("Wait after the last unit left = %v, want nil", err)
	}
}

// TestWaitLeavesNothingBehind: a Wait whose ctx ends while a unit is still
// inside must not leave a goroutine waiting for that unit.
func TestWaitLeavesNothingBehind(t *testing.T) {
	defer goleak.VerifyNone(t)
	var g gate.Gate
	if !g.Enter() {
		t.Fatal("an open gate refused a unit")
	}
	g.Close()
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		err := g.Wait(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with a unit inside = %v, want the context's deadline", err)
		}
	}
	// The unit is still inside: a goroutine left waiting for it by Wait
	// would still be there for goleak to find.
	if err := goleak.Find(); err != nil {
		t.Errorf("after Wait returned on its context: %v", err)
	}
	g.Leave()
	if err := g.Wait(context.Background()); err != nil {
		t.Fatalf("Wait after the last unit left = %v, want nil", err)
	}
}

// TestWaitWakesEveryWaiter: every Wait in progress returns when the last
// unit leaves, and a Wait that gave up does not stop the others.
func TestWaitWakesEveryWaiter(t *testing.T) {
	defer goleak.VerifyNone(t)
	var g gate.Gate
	for range 2 {
		if !g.Enter() {
			t.Fatal("an open gate refused a unit")
		}
	}
	g.Close()
	gaveUp, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(gaveUp); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context = %v, want context.Canceled", err)
	}
	const waiters = 4
	waited := make(chan error, waiters)
	for range waiters {
		go func() { waited <- g.Wait(context.Background()) }()
	}
	g.Leave()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v with a unit still inside", err)
	case <-time.After(20 * time.Millisecond):
	}
	g.Leave()
	for range waiters {
		if err := <-waited; err != nil {
			t.Fatalf("Wait after the last unit left = %v, want nil", err)
		}
	}
}

// TestGateConcurrent enters, leaves, closes and waits from many goroutines
// (for the race detector): once Close and Wait have returned, no unit is
// inside and none is admitted.
func TestGateConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	var g gate.Gate
	var inside, entered atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if g.Enter() {
					inside.Add(1)
					entered.Add(1)
					inside.Add(-1)
					g.Leave()
				}
			}
		})
	}
	// Close while the goroutines are busy entering and leaving.
	for entered.Load() < 1000 {
		runtime.Gosched()
	}
	g.Close()
	if err := g.Wait(context.Background()); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if n := inside.Load(); n != 0 {
		t.Errorf("%d units inside after Wait returned", n)
	}
	if g.Enter() {
		t.Error("a closed gate admitted a unit")
	}
	close(stop)
	wg.Wait()
}

func TestLeaveWithoutEnterPanics(t *testing.T) {
	var g gate.Gate
	defer func() {
		if recover() == nil {
			t.Error("Leave without Enter did not panic")
		}
	}()
	g.Leave()
}
