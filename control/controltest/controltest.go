// Package controltest is the conformance suite every control.Backend must
// pass: broadcast, presence (entries, stats, expiry), revocations and node
// announcements, on one node and, for a store nodes share, across two.
// Each store's tests call Run with factories for fresh backends.
//
// Backends made for parallel cases may share one store (one Redis): every
// case uses names of its own (topics, users, node ids, broadcast
// payloads) and asserts only about them.
package controltest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/internal/testkit"
)

// Factory returns a backend of a fresh node; the factory registers its own
// cleanup with t.
type Factory func(t *testing.T) control.Backend

// PeerFactory returns the backend of another node on the same store as b,
// cleaned up with t.
type PeerFactory func(t *testing.T, b control.Backend) control.Backend

// within bounds every wait of the suite for something that should happen
// soon (a delivery, an expiry).
const within = 10 * time.Second

// shortTTL is the TTL of the entries, revocations and announcements the
// suite waits to see expire.
const shortTTL = 500 * time.Millisecond

// Run runs the whole suite against backends made by newBackend. newPeer
// returns another node's backend on the same store as its argument; nil
// (a store of one node, like the memory store) leaves out the cases
// across nodes.
func Run(t *testing.T, newBackend func(t *testing.T) control.Backend, newPeer func(t *testing.T, b control.Backend) control.Backend) {
	type testCase struct {
		name string
		fn   func(*testing.T, Factory, PeerFactory)
	}
	tests := []testCase{
		{"BroadcastReachesThisNode", testBroadcastLocal},
		{"BroadcastHandlerMayCallTheBackend", testBroadcastReentrant},
		{"PresenceAddListStats", testPresenceAddListStats},
		{"ReAddingExtendsRatherThanDuplicates", testReAddExtends},
		{"RemoveDecrementsUsersOnlyWithTheLastSession", testRemoveDecrements},
		{"RemovingAnAbsentEntryIsFine", testRemoveAbsent},
		{"EntriesExpireAfterTheTTL", testPresenceExpires},
		{"RevocationsAreListedUntilUntil", testRevocations},
		{"AnnouncedNodesAreListed", testAnnounce},
		{"NodeExpiresWhenItStopsAnnouncing", testNodeExpires},
		{"CancelledContextIsAnError", testCancelled},
	}
	if newPeer != nil {
		tests = append(tests,
			testCase{"BroadcastReachesThePeerInOrder", testBroadcastPeer},
			testCase{"PeerPresenceIsVisible", testPresencePeer},
			testCase{"PeerRevocationsAreVisible", testRevocationsPeer},
			testCase{"PeerAnnouncementIsVisible", testAnnouncePeer},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newBackend, newPeer)
		})
	}
}

// inbox records the broadcasts a handler receives, and whether two calls
// ever overlapped.
type inbox struct {
	mu      sync.Mutex
	msgs    []string
	more    chan struct{}
	active  atomic.Int32
	overlap atomic.Bool
	// also, when set, runs in the handler after the message is recorded.
	also func(msg []byte)
}

func newInbox() *inbox { return &inbox{more: make(chan struct{}, 1)} }

// handle is the OnBroadcast handler.
func (in *inbox) handle(msg []byte) {
	if in.active.Add(1) != 1 {
		in.overlap.Store(true)
	}
	defer in.active.Add(-1)
	in.mu.Lock()
	in.msgs = append(in.msgs, string(msg))
	in.mu.Unlock()
	if in.also != nil {
		in.also(msg)
	}
	select {
	case in.more <- struct{}{}:
	default:
	}
}

// with returns the messages received so far that start with prefix.
func (in *inbox) with(prefix string) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, m := range in.msgs {
		if strings.HasPrefix(m, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// wait returns the first n messages that start with prefix, failing the
// test if they do not arrive in time.
func (in *inbox) wait(t *testing.T, prefix string, n int) []string {
	t.Helper()
	deadline := time.After(within)
	for {
		if got := in.with(prefix); len(got) >= n {
			return got
		}
		select {
		case <-in.more:
		case <-deadline:
			t.Fatalf("received %d broadcasts starting with %q, want %d", len(in.with(prefix)), prefix, n)
		}
	}
}

// connect broadcasts probes from b until every inbox has received one: a
// node that joined the store a moment ago may not hear broadcasts yet
// (delivery is best effort), and the cases assert what happens once it
// does. It returns the probes' prefix.
func connect(t *testing.T, b control.Backend, tag string, inboxes ...*inbox) string {
	t.Helper()
	prefix := tag + " probe "
	n := 0
	testkit.Eventually(t, within, func() error {
		n++
		if err := b.Broadcast(t.Context(), fmt.Appendf(nil, "%s%d", prefix, n)); err != nil {
			return err
		}
		for i, in := range inboxes {
			if len(in.with(prefix)) == 0 {
				return fmt.Errorf("inbox %d has received none of %d probes", i, n)
			}
		}
		return nil
	})
	return prefix
}

func testBroadcastLocal(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	in := newInbox()
	b.OnBroadcast(in.handle)
	tag := uuid.NewString()
	connect(t, b, tag, in)
	want := []string{tag + " m a", tag + " m b", tag + " m c"}
	for _, m := range want {
		if err := b.Broadcast(t.Context(), []byte(m)); err != nil {
			t.Fatalf("Broadcast: %v", err)
		}
	}
	if got := in.wait(t, tag+" m ", len(want)); !slices.Equal(got, want) {
		t.Fatalf("this node received %q, want %q", got, want)
	}
	if in.overlap.Load() {
		t.Fatal("the handler was called concurrently with itself")
	}
}

func testBroadcastReentrant(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	in := newInbox()
	tag := uuid.NewString()
	topic := "room." + uuid.NewString()
	var handlerErr atomic.Pointer[error]
	in.also = func(msg []byte) {
		if string(msg) != tag+" ping" {
			return
		}
		// The handler runs control actions: it reads and writes the
		// store, and broadcasts, from within the delivery.
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		err := b.UpdatePresence(ctx, control.PresenceUpdate{TTL: time.Minute,
			Add: []control.PresenceEntry{{Topic: topic, Session: "s1", User: "u1", Node: "n1"}}})
		if err == nil {
			_, err = b.PresenceStats(ctx, topic)
		}
		if err == nil {
			err = b.Broadcast(ctx, []byte(tag+" pong"))
		}
		if err != nil {
			handlerErr.Store(&err)
		}
	}
	b.OnBroadcast(in.handle)
	connect(t, b, tag, in)
	if err := b.Broadcast(t.Context(), []byte(tag+" ping")); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	in.wait(t, tag+" pong", 1)
	if err := handlerErr.Load(); err != nil {
		t.Fatalf("the handler's calls to the backend failed: %v", *err)
	}
	if got := stats(t, b, topic); got != (control.PresenceStats{Sessions: 1, Users: 1}) {
		t.Fatalf("stats after the handler added an entry = %+v, want 1 session, 1 user", got)
	}
	if in.overlap.Load() {
		t.Fatal("the handler was called concurrently with itself")
	}
}

func testBroadcastPeer(t *testing.T, newBackend Factory, newPeer PeerFactory) {
	b := newBackend(t)
	p := newPeer(t, b)
	mine, theirs := newInbox(), newInbox()
	b.OnBroadcast(mine.handle)
	p.OnBroadcast(theirs.handle)
	tag := uuid.NewString()
	connect(t, b, tag, mine, theirs)
	const n = 100
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("%s msg %03d", tag, i)
		if err := b.Broadcast(t.Context(), []byte(want[i])); err != nil {
			t.Fatalf("Broadcast %d: %v", i, err)
		}
	}
	for name, in := range map[string]*inbox{"the peer": theirs, "this node": mine} {
		if got := in.wait(t, tag+" msg ", n); !slices.Equal(got, want) {
			t.Fatalf("%s received %d messages out of order or changed: %q", name, len(got), got)
		}
		if in.overlap.Load() {
			t.Fatalf("the handler of %s was called concurrently with itself", name)
		}
	}
}

// revocations returns the live revocations keyed "user:<U>" or "jti:<J>".
func revocations(t *testing.T, b control.Backend) map[string]control.Revocation {
	return listed(t, "Revocations", b.Revocations, func(r control.Revocation) (string, error) {
		switch {
		case (r.User == "") == (r.TokenID == ""):
			return "", fmt.Errorf("a revocation names %q and %q: want exactly one of a user and a token id", r.User, r.TokenID)
		case r.User != "":
			return "user:" + r.User, nil
		}
		return "jti:" + r.TokenID, nil
	})
}

// listed returns what list lists, by key; a record without a key, or two
// with one key, fail the test.
func listed[V any](t *testing.T, what string, list func(context.Context) ([]V, error), key func(V) (string, error)) map[string]V {
	t.Helper()
	all, err := list(t.Context())
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	out := make(map[string]V, len(all))
	for _, v := range all {
		k, err := key(v)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if _, dup := out[k]; dup {
			t.Fatalf("%s lists %s twice", what, k)
		}
		out[k] = v
	}
	return out
}

func revoke(t *testing.T, b control.Backend, r control.Revocation) {
	t.Helper()
	if err := b.Revoke(t.Context(), r); err != nil {
		t.Fatalf("Revoke(%+v): %v", r, err)
	}
}

// sameUntil compares times at the millisecond, what a store may keep.
func sameUntil(a, b time.Time) bool { return a.UnixMilli() == b.UnixMilli() }

func testRevocations(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	id := uuid.NewString()
	soon := time.Now().Add(shortTTL)
	later := time.Now().Add(time.Hour)
	user := control.Revocation{User: "user-" + id, Until: soon}
	token := control.Revocation{TokenID: "jti-" + id, Until: soon}
	lasting := control.Revocation{User: "lasting-" + id, Until: later}
	past := control.Revocation{TokenID: "past-" + id, Until: time.Now().Add(-time.Second)}
	for _, r := range []control.Revocation{user, token, lasting, past} {
		revoke(t, b, r)
	}
	// Revoking again with an earlier Until keeps the later one.
	revoke(t, b, control.Revocation{User: lasting.User, Until: soon})
	got := revocations(t, b)
	if time.Now().Before(soon) {
		for key, want := range map[string]control.Revocation{"user:" + user.User: user, "jti:" + token.TokenID: token} {
			if r, ok := got[key]; !ok || !sameUntil(r.Until, want.Until) {
				t.Fatalf("revocation %s = %+v (listed %v), want until %v", key, r, ok, want.Until)
			}
		}
	}
	if r, ok := got["user:"+lasting.User]; !ok || !sameUntil(r.Until, later) {
		t.Fatalf("revocation of %s = %+v (listed %v), want the later until %v", lasting.User, r, ok, later)
	}
	if _, ok := got["jti:"+past.TokenID]; ok {
		t.Fatal("a revocation whose Until has passed is listed")
	}
	testkit.Eventually(t, within, func() error {
		got := revocations(t, b)
		for _, key := range []string{"user:" + user.User, "jti:" + token.TokenID} {
			if _, ok := got[key]; ok {
				return fmt.Errorf("revocation %s is still listed after its Until", key)
			}
		}
		return nil
	})
	if _, ok := revocations(t, b)["user:"+lasting.User]; !ok {
		t.Fatalf("revocation of %s, until an hour from now, is gone", lasting.User)
	}
}

func testRevocationsPeer(t *testing.T, newBackend Factory, newPeer PeerFactory) {
	b := newBackend(t)
	p := newPeer(t, b)
	r := control.Revocation{TokenID: "jti-" + uuid.NewString(), Until: time.Now().Add(time.Hour)}
	revoke(t, b, r)
	if got, ok := revocations(t, p)["jti:"+r.TokenID]; !ok || !sameUntil(got.Until, r.Until) {
		t.Fatalf("the peer lists %+v (listed %v), want %+v", got, ok, r)
	}
}

// nodes returns the live announcements by node id.
func nodes(t *testing.T, b control.Backend) map[string]control.NodeInfo {
	return listed(t, "Nodes", b.Nodes, func(n control.NodeInfo) (string, error) { return n.ID, nil })
}

func announce(t *testing.T, b control.Backend, n control.NodeInfo, ttl time.Duration) {
	t.Helper()
	if err := b.Announce(t.Context(), n, ttl); err != nil {
		t.Fatalf("Announce(%s): %v", n.ID, err)
	}
}

func nodeInfo(id string) control.NodeInfo {
	return control.NodeInfo{ID: id, Version: "v1.2.3", Uptime: 12.5, Sessions: 1000, Subscriptions: 2500, Topics: 40,
		PublishedPerSecond: 120.25, DeliveredPerSecond: 9000.5}
}

func testAnnounce(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	n := nodeInfo("node-" + uuid.NewString())
	announce(t, b, n, time.Minute)
	if got, ok := nodes(t, b)[n.ID]; !ok || got != n {
		t.Fatalf("node listed as %+v (listed %v), want %+v", got, ok, n)
	}
	n.Sessions, n.Uptime = 1001, 22.5
	announce(t, b, n, time.Minute)
	if got, ok := nodes(t, b)[n.ID]; !ok || got != n {
		t.Fatalf("node announced again listed as %+v (listed %v), want the new %+v", got, ok, n)
	}
}

func testNodeExpires(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	id := uuid.NewString()
	stops, goesOn := nodeInfo("stops-"+id), nodeInfo("goes-on-"+id)
	start := time.Now()
	announce(t, b, stops, shortTTL)
	announce(t, b, goesOn, shortTTL)
	got := nodes(t, b)
	if _, ok := got[stops.ID]; time.Since(start) < shortTTL && !ok {
		t.Fatal("a node is not listed right after announcing")
	}
	// Announcing again extends.
	announce(t, b, goesOn, time.Minute)
	testkit.Eventually(t, within, func() error {
		if _, ok := nodes(t, b)[stops.ID]; ok {
			return fmt.Errorf("node %s is listed after its %v TTL", stops.ID, shortTTL)
		}
		return nil
	})
	if _, ok := nodes(t, b)[goesOn.ID]; !ok {
		t.Fatal("a node that announced again with a longer TTL expired with its first TTL")
	}
}

func testAnnouncePeer(t *testing.T, newBackend Factory, newPeer PeerFactory) {
	b := newBackend(t)
	p := newPeer(t, b)
	n := nodeInfo("peer-" + uuid.NewString())
	announce(t, p, n, time.Minute)
	if got, ok := nodes(t, b)[n.ID]; !ok || got != n {
		t.Fatalf("the peer's announcement is listed as %+v (listed %v), want %+v", got, ok, n)
	}
}

func testCancelled(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	topic := newTopic("cancelled")
	calls := map[string]func() error{
		"Broadcast": func() error { return b.Broadcast(ctx, []byte("x")) },
		"UpdatePresence": func() error {
			return b.UpdatePresence(ctx, control.PresenceUpdate{TTL: time.Minute,
				Add: []control.PresenceEntry{{Topic: topic, Session: "s1", User: "u", Node: "n"}}})
		},
		"Presence":      func() error { _, err := b.Presence(ctx, topic); return err },
		"PresenceStats": func() error { _, err := b.PresenceStats(ctx, topic); return err },
		"Revoke": func() error {
			return b.Revoke(ctx, control.Revocation{User: "u-" + uuid.NewString(), Until: time.Now().Add(time.Hour)})
		},
		"Revocations": func() error { _, err := b.Revocations(ctx); return err },
		"Announce":    func() error { return b.Announce(ctx, nodeInfo("n-"+uuid.NewString()), time.Minute) },
		"Nodes":       func() error { _, err := b.Nodes(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s with a cancelled context succeeded", name)
		}
	}
	if got := stats(t, b, topic); got != (control.PresenceStats{}) {
		t.Fatalf("an update with a cancelled context was applied: stats %+v", got)
	}
}
