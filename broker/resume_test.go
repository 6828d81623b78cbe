package broker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
)

// laggingRelay is a memory store whose deliveries to the broker are held
// until the test releases them, as a Redis relay's pub/sub delivery trails
// the store that a subscribe reads its position and replay from.
type laggingRelay struct {
	*memory.Store
	mu   sync.Mutex
	sink broker.Deliverer
	held []func()
}

func (l *laggingRelay) Listen(d broker.Deliverer) {
	l.mu.Lock()
	l.sink = d
	l.mu.Unlock()
	l.Store.Listen(heldDeliverer{l})
}

// heldDeliverer queues what the memory store delivers.
type heldDeliverer struct{ l *laggingRelay }

func (h heldDeliverer) Deliver(m *broker.Message) {
	h.l.hold(func() { h.l.sink.Deliver(m) })
}

func (h heldDeliverer) Reset(topic string, pos broker.Position, reason string) {
	h.l.hold(func() { h.l.sink.Reset(topic, pos, reason) })
}

func (l *laggingRelay) hold(f func()) {
	l.mu.Lock()
	l.held = append(l.held, f)
	l.mu.Unlock()
}

// release delivers everything held, in order.
func (l *laggingRelay) release() {
	l.mu.Lock()
	held := l.held
	l.held = nil
	l.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// laggingBroker returns a broker on a memory store whose relay lags.
func laggingBroker(t *testing.T) (*broker.Broker, *laggingRelay) {
	t.Helper()
	st := &laggingRelay{Store: memory.New(memory.Config{HistorySize: 1000})}
	t.Cleanup(func() { _ = st.Close() })
	return broker.New(broker.Config{}, st, textEncoder{}), st
}

// offsetsOf returns the offsets of the message frames in frames, and fails
// on any other frame.
func offsetsOf(t *testing.T, frames []string) []uint64 {
	t.Helper()
	var out []uint64
	for _, f := range frames {
		var topic string
		var off uint64
		if _, err := fmt.Sscanf(f, "msg %s %d", &topic, &off); err != nil {
			t.Fatalf("frame %q is not a message", f)
		}
		out = append(out, off)
	}
	return out
}

func wantOffsets(t *testing.T, what string, got []uint64, from, to uint64) {
	t.Helper()
	var want []uint64
	for o := from; o <= to; o++ {
		want = append(want, o)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got offsets %v, want %v", what, got, want)
	}
}

// A resume whose replay reaches further than the relay has delivered on
// this node gets each offset once: the relay's late deliveries of offsets
// the replay covered are not sent again.
func TestResumeAheadOfTheRelayRepeatsNoOffset(t *testing.T) {
	t.Parallel()
	b, st := laggingBroker(t)
	ctx := context.Background()
	publish(t, b, "a.b", 5)
	st.release()
	pos, err := st.Position(ctx, "a.b")
	if err != nil {
		t.Fatal(err)
	}

	// Offsets 6..8 are stored, and history has them, but the relay has not
	// delivered them yet when the client resumes from offset 5.
	publish(t, b, "a.b", 3)
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(ctx, "r", "a.b", &broker.Position{Offset: 5, Epoch: pos.Epoch}); err != nil {
		t.Fatal(err)
	}
	got := drain(s)
	if len(got) == 0 || got[0] != "sub r a.b 8 true" {
		t.Fatalf("first frame of %q, want the subscribed answer at offset 8, recovered", got)
	}
	wantOffsets(t, "replay", offsetsOf(t, got[1:]), 6, 8)

	// The relay catches up, then the live stream goes on.
	st.release()
	publish(t, b, "a.b", 2)
	st.release()
	wantOffsets(t, "live after the replay", offsetsOf(t, drain(s)), 9, 10)
}

// A plain subscribe answered at a position the relay has not reached yet
// does not receive the messages at or before that position.
func TestSubscribeAheadOfTheRelayStartsAfterItsPosition(t *testing.T) {
	t.Parallel()
	b, st := laggingBroker(t)
	ctx := context.Background()
	publish(t, b, "a.b", 4)
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(ctx, "r", "a.b", nil); err != nil {
		t.Fatal(err)
	}
	if got := drain(s); len(got) != 1 || got[0] != "sub r a.b 4 false" {
		t.Fatalf("got %q, want only the subscribed answer at offset 4", got)
	}
	st.release()
	publish(t, b, "a.b", 1)
	st.release()
	wantOffsets(t, "live", offsetsOf(t, drain(s)), 5, 5)
}

// A reset the relay delivers late, for a position the subscription is
// already past, is not sent: it would move the client back and make it
// take the following messages twice.
func TestStaleResetIsNotSent(t *testing.T) {
	t.Parallel()
	b, st := laggingBroker(t)
	ctx := context.Background()
	msgs := publish(t, b, "a.b", 3)
	// What the relay will deliver: offset 1, a gap reset for the offset 2
	// it missed, then offset 3; the subscribe below is answered at 3.
	st.mu.Lock()
	st.held = nil
	st.mu.Unlock()
	st.hold(func() { st.sink.Deliver(msgs[0]) })
	st.hold(func() { st.sink.Reset("a.b", broker.Position{Offset: 2, Epoch: msgs[0].Epoch}, broker.ResetGap) })
	st.hold(func() { st.sink.Deliver(msgs[2]) })
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(ctx, "r", "a.b", nil); err != nil {
		t.Fatal(err)
	}
	if got := drain(s); len(got) != 1 || got[0] != "sub r a.b 3 false" {
		t.Fatalf("got %q, want the subscribed answer at offset 3", got)
	}
	st.release()
	publish(t, b, "a.b", 1)
	st.release()
	got := drain(s)
	if strings.Contains(strings.Join(got, "|"), "reset") {
		t.Fatalf("got %q: a stale reset was sent", got)
	}
	wantOffsets(t, "live", offsetsOf(t, got), 4, 4)

	// A reset past the position is sent, and the stream continues after it.
	b.Reset("a.b", broker.Position{Offset: 10, Epoch: msgs[0].Epoch}, broker.ResetGap)
	if got := drain(s); len(got) != 1 || got[0] != "reset a.b 10 gap " {
		t.Fatalf("got %q, want the gap reset", got)
	}
}

// A subscription answered in the store's current epoch drops what the
// relay, still on an older epoch, delivers late, and the relay's reset to
// the current epoch, and then follows the current epoch.
func TestSubscribeAheadOfAnEpochChangeDropsTheOldEpoch(t *testing.T) {
	t.Parallel()
	b, st := laggingBroker(t)
	ctx := context.Background()
	cur := publish(t, b, "a.b", 2) // the store's epoch, which the subscribe reads
	st.mu.Lock()
	st.held = nil
	st.mu.Unlock()
	epoch := cur[0].Epoch
	// The relay has not caught up with the epoch change yet: it still
	// delivers the old epoch, then announces the current one.
	st.hold(func() { st.sink.Deliver(&broker.Message{ID: "o7", Topic: "a.b", Offset: 7, Epoch: "old"}) })
	st.hold(func() { st.sink.Reset("a.b", broker.Position{Offset: 0, Epoch: epoch}, broker.ResetHistoryLost) })
	st.hold(func() { st.sink.Deliver(cur[0]) })
	st.hold(func() { st.sink.Deliver(cur[1]) })
	s := b.NewSession()
	t.Cleanup(s.Close)
	if err := s.Subscribe(ctx, "r", "a.b", nil); err != nil {
		t.Fatal(err)
	}
	if got := drain(s); len(got) != 1 || got[0] != "sub r a.b 2 false" {
		t.Fatalf("got %q, want the subscribed answer at offset 2", got)
	}
	st.release()
	publish(t, b, "a.b", 1)
	st.release()
	got := drain(s)
	if len(got) != 1 || got[0] != "msg a.b 3 " {
		t.Fatalf("got %q, want only offset 3 of the current epoch", got)
	}
}
