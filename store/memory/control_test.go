package memory

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/control/controltest"
	"github.com/tidings-io/tidings/internal/testkit"
)

func TestControlConformance(t *testing.T) {
	controltest.Run(t, func(t *testing.T) control.Backend {
		s := New(Config{})
		t.Cleanup(func() { _ = s.Close() })
		return s
	}, nil)
}

func newControlClocked(t *testing.T) (*Store, *testkit.Clock) {
	t.Helper()
	c := testkit.NewClock(time.Unix(1_700_000_000, 0))
	s := New(Config{Now: c.Now})
	t.Cleanup(func() { _ = s.Close() })
	return s, c
}

func mustStats(t *testing.T, s *Store, topic string) control.PresenceStats {
	t.Helper()
	st, err := s.PresenceStats(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Presence expires on the store's clock, to the instant: live until the
// TTL has passed, gone from then on, its user no longer counted.
func TestPresenceExpiresOnTheClock(t *testing.T) {
	s, c := newControlClocked(t)
	add := func(session, user string) {
		t.Helper()
		err := s.UpdatePresence(t.Context(), control.PresenceUpdate{TTL: 30 * time.Second,
			Add: []control.PresenceEntry{{Topic: "room", Session: session, User: user, Node: "n"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("s1", "alice")
	c.Add(10 * time.Second)
	add("s2", "alice")
	add("s3", "bob")
	c.Add(20*time.Second - time.Millisecond)
	if got := mustStats(t, s, "room"); got != (control.PresenceStats{Sessions: 3, Users: 2}) {
		t.Fatalf("1 ms before s1 expires: %+v, want 3 sessions, 2 users", got)
	}
	c.Add(time.Millisecond)
	if got := mustStats(t, s, "room"); got != (control.PresenceStats{Sessions: 2, Users: 2}) {
		t.Fatalf("when s1 expires: %+v, want 2 sessions, 2 users (alice still has s2)", got)
	}
	add("s3", "bob") // refreshed: lives 30 s from now
	c.Add(10 * time.Second)
	if got := mustStats(t, s, "room"); got != (control.PresenceStats{Sessions: 1, Users: 1}) {
		t.Fatalf("when s2 expires: %+v, want only bob's refreshed s3", got)
	}
	c.Add(20 * time.Second)
	if got := mustStats(t, s, "room"); got != (control.PresenceStats{}) {
		t.Fatalf("when s3 expires: %+v, want zero", got)
	}
}

// A session whose entry is added again with another user moves from one
// user's count to the other's.
func TestPresenceReAddWithAnotherUser(t *testing.T) {
	s, _ := newControlClocked(t)
	add := func(user string) {
		t.Helper()
		err := s.UpdatePresence(t.Context(), control.PresenceUpdate{TTL: time.Minute,
			Add: []control.PresenceEntry{{Topic: "room", Session: "s1", User: user, Node: "n"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("")
	add("alice")
	if got := mustStats(t, s, "room"); got != (control.PresenceStats{Sessions: 1, Users: 1}) {
		t.Fatalf("after the anonymous session signed in: %+v, want 1 session, 1 user", got)
	}
	add("bob")
	list, err := s.Presence(t.Context(), "room")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustStats(t, s, "room"); got != (control.PresenceStats{Sessions: 1, Users: 1}) || len(list) != 1 || list[0].User != "bob" {
		t.Fatalf("after the session changed user: %+v, %+v; want one session of bob", got, list)
	}
}

// Topics whose entries expired where nobody reads them are dropped by a
// later update, at most a sweep interval later: they hold no memory.
func TestAbandonedPresenceIsSwept(t *testing.T) {
	s, c := newControlClocked(t)
	var add []control.PresenceEntry
	for i := range 1000 {
		add = append(add, control.PresenceEntry{Topic: fmt.Sprintf("room.%d", i), Session: "s", User: "u", Node: "n"})
	}
	if err := s.UpdatePresence(t.Context(), control.PresenceUpdate{Add: add, TTL: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	c.Add(presenceSweepEvery + time.Second)
	if err := s.UpdatePresence(t.Context(), control.PresenceUpdate{TTL: time.Minute,
		Add: []control.PresenceEntry{{Topic: "live", Session: "s", Node: "n"}}}); err != nil {
		t.Fatal(err)
	}
	cp := s.controlPlane()
	cp.mu.Lock()
	n := len(cp.topics)
	cp.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d topics held after the sweep, want only the live one", n)
	}
}

// Revocations and announcements expire on the store's clock.
func TestRevocationsAndNodesExpireOnTheClock(t *testing.T) {
	s, c := newControlClocked(t)
	ctx := t.Context()
	if err := s.Revoke(ctx, control.Revocation{User: "alice", Until: c.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, control.Revocation{User: "alice", Until: c.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(ctx, control.NodeInfo{ID: "n1"}, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Add(15*time.Second - time.Millisecond)
	revs, err := s.Revocations(ctx)
	if err != nil || len(revs) != 1 || !revs[0].Until.Equal(time.Unix(1_700_000_060, 0)) {
		t.Fatalf("revocations = %+v, %v; want alice's until the later minute", revs, err)
	}
	if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != 1 {
		t.Fatalf("nodes 1 ms before the TTL = %+v, %v; want n1", nodes, err)
	}
	c.Add(time.Millisecond)
	if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes at the TTL = %+v, %v; want none", nodes, err)
	}
	c.Add(45 * time.Second)
	if revs, err := s.Revocations(ctx); err != nil || len(revs) != 0 {
		t.Fatalf("revocations at their Until = %+v, %v; want none", revs, err)
	}
}

// A revocation names exactly one of a user and a token id; presence to
// add needs a TTL.
func TestControlRefusesDefects(t *testing.T) {
	s, _ := newControlClocked(t)
	ctx := t.Context()
	until := time.Now().Add(time.Hour)
	if err := s.Revoke(ctx, control.Revocation{Until: until}); err == nil {
		t.Fatal("a revocation of nothing was accepted")
	}
	if err := s.Revoke(ctx, control.Revocation{User: "u", TokenID: "j", Until: until}); err == nil {
		t.Fatal("a revocation of both a user and a token was accepted")
	}
	if err := s.UpdatePresence(ctx, control.PresenceUpdate{Add: []control.PresenceEntry{{Topic: "t", Session: "s"}}}); err == nil {
		t.Fatal("an update adding entries with no TTL was accepted")
	}
	if err := s.Announce(ctx, control.NodeInfo{ID: "n"}, 0); err == nil {
		t.Fatal("an announcement with no TTL was accepted")
	}
}

// Broadcasts from many goroutines reach the handler one at a time, each
// once, every goroutine's in its order.
func TestBroadcastSerialisesConcurrentSenders(t *testing.T) {
	s, _ := newControlClocked(t)
	var (
		mu      sync.Mutex
		inside  bool
		overlap bool
		last    = map[byte]int{}
		order   = true
		n       int
	)
	s.OnBroadcast(func(msg []byte) {
		mu.Lock()
		overlap = overlap || inside
		inside = true
		mu.Unlock()
		runtime.Gosched()
		mu.Lock()
		inside = false
		var i int
		_, _ = fmt.Sscanf(string(msg[1:]), "%d", &i)
		order = order && i == last[msg[0]]
		last[msg[0]] = i + 1
		n++
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if err := s.Broadcast(t.Context(), fmt.Appendf(nil, "%c%d", 'a'+g, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Every Broadcast has returned: the last delivering call handed over
	// every message before returning.
	mu.Lock()
	defer mu.Unlock()
	if n != 8*200 || overlap || !order {
		t.Fatalf("%d deliveries (want 1600), overlapping %v, in order %v", n, overlap, order)
	}
}

// A closed store refuses control work.
func TestClosedStoreRefusesControl(t *testing.T) {
	s := New(Config{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Broadcast(t.Context(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Broadcast on a closed store: %v, want ErrClosed", err)
	}
	if _, err := s.PresenceStats(t.Context(), "t"); !errors.Is(err, ErrClosed) {
		t.Fatalf("PresenceStats on a closed store: %v, want ErrClosed", err)
	}
}
