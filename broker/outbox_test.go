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
	o.Push([]byte("a"))
	select {
	case <-o.Ready():
	default:
		t.Fatal("Push did not signal Ready")
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
