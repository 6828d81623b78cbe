package broker_test

import (
	"testing"

	"github.com/tidings-io/tidings/broker"
)

func TestOutboxBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		maxFrames, maxB   int
		frames            []int // sizes
		wantQueued        int
		wantOverflowCalls int
	}{
		{"under both bounds", 4, 100, []int{10, 10}, 2, 0},
		{"count bound", 2, 100, []int{1, 1, 1, 1}, 2, 1},
		{"byte bound inclusive", 10, 20, []int{10, 10, 1}, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			o := broker.NewOutbox(tc.maxFrames, tc.maxB, func() { calls++ })
			for _, n := range tc.frames {
				o.Push(make([]byte, n))
			}
			frames, overflowed := o.Drain(nil)
			if len(frames) != tc.wantQueued || overflowed != (tc.wantOverflowCalls > 0) || calls != tc.wantOverflowCalls {
				t.Fatalf("queued %d overflowed %v calls %d; want %d, %v, %d",
					len(frames), overflowed, calls, tc.wantQueued, tc.wantOverflowCalls > 0, tc.wantOverflowCalls)
			}
		})
	}
}

func TestOutboxDrainAlternatesBuffersAndSignals(t *testing.T) {
	t.Parallel()
	o := broker.NewOutbox(8, 1<<20, nil)
	signals := 0
	o.Notify(func() { signals++ })
	o.Push([]byte("a"))
	if signals != 1 {
		t.Fatalf("Push to an empty outbox signalled %d times, want 1", signals)
	}
	first, _ := o.Drain(nil)
	o.Push([]byte("b"))
	second, _ := o.Drain(first)
	if len(second) != 1 || string(second[0]) != "b" || o.Len() != 0 {
		t.Fatalf("second drain = %q, len %d", second, o.Len())
	}
	o.Close()
	if o.Push([]byte("c")) {
		t.Fatal("Push after Close succeeded")
	}
}

func TestOutboxDrainIgnoresTheSliceItFills(t *testing.T) {
	t.Parallel()
	o := broker.NewOutbox(8, 1<<20, nil)
	o.Push([]byte("a"))
	o.Push([]byte("b"))
	held, _ := o.Drain(nil)
	// Drain again with held: the outbox now fills held's array.
	empty, _ := o.Drain(held)
	if len(empty) != 0 {
		t.Fatalf("second drain = %q, want none", empty)
	}
	o.Push([]byte("c"))
	o.Push([]byte("d"))
	// A writer that kept held instead of empty hands in the slice the
	// outbox fills: what it gets back must survive the next pushes.
	got, _ := o.Drain(held)
	o.Push([]byte("e"))
	o.Push([]byte("f"))
	if len(got) != 2 || string(got[0]) != "c" || string(got[1]) != "d" {
		t.Fatalf("drain with the outbox's own slice = %q, want [c d]", got)
	}
	if rest, _ := o.Drain(nil); len(rest) != 2 || string(rest[0]) != "e" || string(rest[1]) != "f" {
		t.Fatalf("next drain = %q, want [e f]", rest)
	}
}

func TestOutboxNotifiesWhenAPushFindsItEmptyAndOnOverflow(t *testing.T) {
	t.Parallel()
	o := broker.NewOutbox(3, 1<<20, nil)
	calls := 0
	o.Notify(func() { calls++ })
	o.Push([]byte("a"))
	o.Push([]byte("b"))
	if calls != 1 {
		t.Fatalf("after two pushes into an empty outbox: %d notifications, want 1", calls)
	}
	if !o.Pending() {
		t.Fatal("Pending = false with two frames queued")
	}
	o.Drain(nil)
	if o.Pending() {
		t.Fatal("Pending = true after a drain")
	}
	o.Push([]byte("c"))
	if calls != 2 {
		t.Fatalf("push after a drain: %d notifications, want 2", calls)
	}
	o.Push([]byte("d"))
	o.Push([]byte("e"))
	o.Push([]byte("f")) // the fourth queued frame overflows
	if calls != 3 || !o.Overflowed() || !o.Pending() {
		t.Fatalf("overflow: %d notifications, overflowed %v, pending %v; want 3, true, true", calls, o.Overflowed(), o.Pending())
	}
}
