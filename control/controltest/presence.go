package controltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/internal/testkit"
)

// newTopic returns a topic name no other case uses.
func newTopic(what string) string { return "presence." + what + "." + uuid.NewString() }

func update(t *testing.T, b control.Backend, u control.PresenceUpdate) {
	t.Helper()
	if err := b.UpdatePresence(t.Context(), u); err != nil {
		t.Fatalf("UpdatePresence: %v", err)
	}
}

func stats(t *testing.T, b control.Backend, topic string) control.PresenceStats {
	t.Helper()
	st, err := b.PresenceStats(t.Context(), topic)
	if err != nil {
		t.Fatalf("PresenceStats: %v", err)
	}
	return st
}

// presence lists topic's entries sorted by session.
func presence(t *testing.T, b control.Backend, topic string) []control.PresenceEntry {
	t.Helper()
	got, err := b.Presence(t.Context(), topic)
	if err != nil {
		t.Fatalf("Presence: %v", err)
	}
	slices.SortFunc(got, func(a, b control.PresenceEntry) int { return strings.Compare(a.Session, b.Session) })
	return got
}

// sameEntries fails t unless got (sorted by session) holds exactly want's
// entries: their Info compared as JSON.
func sameEntries(t *testing.T, got []control.PresenceEntry, want ...control.PresenceEntry) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b control.PresenceEntry) int { return strings.Compare(a.Session, b.Session) })
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Topic == w.Topic && g.Session == w.Session && g.User == w.User && g.Node == w.Node && sameJSON(g.Info, w.Info)
	}
	if !ok {
		t.Fatalf("presence entries:\n got  %s\n want %s", describe(got), describe(want))
	}
}

func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

func describe(entries []control.PresenceEntry) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "{%s %s user=%q node=%s info=%s} ", e.Topic, e.Session, e.User, e.Node, e.Info)
	}
	return b.String()
}

func testPresenceAddListStats(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	topic, other := newTopic("list"), newTopic("other")
	entries := []control.PresenceEntry{
		{Topic: topic, Session: "s1", User: "alice", Info: json.RawMessage(`{"name": "Alice", "n": [1, 2.5]}`), Node: "n1"},
		{Topic: topic, Session: "s2", User: "alice", Node: "n2"},
		{Topic: topic, Session: "s3", User: "bob", Info: json.RawMessage(`"b"`), Node: "n1"},
		{Topic: topic, Session: "s4", User: "", Node: "n1"},
		{Topic: topic, Session: "s5", User: "", Info: json.RawMessage(`{"guest":true}`), Node: "n2"},
	}
	elsewhere := control.PresenceEntry{Topic: other, Session: "s1", User: "carol", Node: "n1"}
	update(t, b, control.PresenceUpdate{Add: append(slices.Clone(entries), elsewhere), TTL: time.Minute})

	sameEntries(t, presence(t, b, topic), entries...)
	if got, want := stats(t, b, topic), (control.PresenceStats{Sessions: 5, Users: 2}); got != want {
		t.Fatalf("stats = %+v, want %+v: two users, anonymous sessions not counted", got, want)
	}
	sameEntries(t, presence(t, b, other), elsewhere)
	if got, want := stats(t, b, other), (control.PresenceStats{Sessions: 1, Users: 1}); got != want {
		t.Fatalf("stats of another topic = %+v, want %+v", got, want)
	}
	empty := newTopic("empty")
	if got := presence(t, b, empty); len(got) != 0 {
		t.Fatalf("a topic nobody joined lists %s", describe(got))
	}
	if got := stats(t, b, empty); got != (control.PresenceStats{}) {
		t.Fatalf("stats of a topic nobody joined = %+v, want zero", got)
	}
}

func testReAddExtends(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	topic, marker := newTopic("readd"), newTopic("marker")
	entries := []control.PresenceEntry{
		{Topic: topic, Session: "s1", User: "alice", Info: json.RawMessage(`{"a":1}`), Node: "n1"},
		{Topic: topic, Session: "s2", User: "", Node: "n1"},
	}
	// The marker is added with the first adds and the same TTL: once it
	// has expired, so would they have, had they not been added again.
	update(t, b, control.PresenceUpdate{
		Add: append(slices.Clone(entries), control.PresenceEntry{Topic: marker, Session: "m", User: "m", Node: "n1"}),
		TTL: shortTTL,
	})
	want := control.PresenceStats{Sessions: 2, Users: 1}
	for range 3 {
		update(t, b, control.PresenceUpdate{Add: entries, TTL: time.Minute})
		if got := stats(t, b, topic); got != want {
			t.Fatalf("stats after adding the same entries again = %+v, want %+v", got, want)
		}
	}
	sameEntries(t, presence(t, b, topic), entries...)
	testkit.Eventually(t, within, func() error {
		if st := stats(t, b, marker); st != (control.PresenceStats{}) {
			return fmt.Errorf("the marker entry added with TTL %v is still live: %+v", shortTTL, st)
		}
		return nil
	})
	if got := stats(t, b, topic); got != want {
		t.Fatalf("stats after the first TTL passed = %+v, want %+v: adding again extends the entries", got, want)
	}
	sameEntries(t, presence(t, b, topic), entries...)
}

func testRemoveDecrements(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	topic := newTopic("remove")
	update(t, b, control.PresenceUpdate{TTL: time.Minute, Add: []control.PresenceEntry{
		{Topic: topic, Session: "s1", User: "alice", Node: "n1"},
		{Topic: topic, Session: "s2", User: "alice", Node: "n2"},
		{Topic: topic, Session: "s3", User: "bob", Node: "n1"},
		{Topic: topic, Session: "s4", User: "", Node: "n1"},
	}})
	steps := []struct {
		session string
		want    control.PresenceStats
		why     string
	}{
		{"s1", control.PresenceStats{Sessions: 3, Users: 2}, "alice still has s2"},
		{"s4", control.PresenceStats{Sessions: 2, Users: 2}, "an anonymous session is no user"},
		{"s2", control.PresenceStats{Sessions: 1, Users: 1}, "alice's last session went"},
		{"s3", control.PresenceStats{}, "bob's last session went"},
	}
	for _, st := range steps {
		update(t, b, control.PresenceUpdate{Remove: []control.PresenceKey{{Topic: topic, Session: st.session}}})
		if got := stats(t, b, topic); got != st.want {
			t.Fatalf("stats after removing %s = %+v, want %+v: %s", st.session, got, st.want, st.why)
		}
	}
	if got := presence(t, b, topic); len(got) != 0 {
		t.Fatalf("entries left after removing them all: %s", describe(got))
	}
}

func testRemoveAbsent(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	topic := newTopic("absent")
	e := control.PresenceEntry{Topic: topic, Session: "s1", User: "alice", Node: "n1"}
	update(t, b, control.PresenceUpdate{Add: []control.PresenceEntry{e}, TTL: time.Minute})
	update(t, b, control.PresenceUpdate{Remove: []control.PresenceKey{
		{Topic: topic, Session: "nobody"},
		{Topic: newTopic("never"), Session: "s1"},
	}})
	if got, want := stats(t, b, topic), (control.PresenceStats{Sessions: 1, Users: 1}); got != want {
		t.Fatalf("stats after removing absent entries = %+v, want %+v", got, want)
	}
	sameEntries(t, presence(t, b, topic), e)
	rm := control.PresenceUpdate{Remove: []control.PresenceKey{{Topic: topic, Session: "s1"}}}
	update(t, b, rm)
	update(t, b, rm) // absent by now
	if got := stats(t, b, topic); got != (control.PresenceStats{}) {
		t.Fatalf("stats after removing an entry twice = %+v, want zero", got)
	}
}

func testPresenceExpires(t *testing.T, newBackend Factory, _ PeerFactory) {
	b := newBackend(t)
	topic := newTopic("expiry")
	short := control.PresenceEntry{Topic: topic, Session: "s1", User: "alice", Node: "n1"}
	long := control.PresenceEntry{Topic: topic, Session: "s2", User: "bob", Node: "n1"}
	start := time.Now()
	update(t, b, control.PresenceUpdate{Add: []control.PresenceEntry{short}, TTL: shortTTL})
	update(t, b, control.PresenceUpdate{Add: []control.PresenceEntry{long}, TTL: time.Minute})
	got := stats(t, b, topic)
	if time.Since(start) < shortTTL && got != (control.PresenceStats{Sessions: 2, Users: 2}) {
		t.Fatalf("stats right after adding = %+v, want 2 sessions, 2 users", got)
	}
	testkit.Eventually(t, within, func() error {
		if st := stats(t, b, topic); st != (control.PresenceStats{Sessions: 1, Users: 1}) {
			return fmt.Errorf("stats = %+v, want 1 session and 1 user once the %v TTL passed", st, shortTTL)
		}
		return nil
	})
	sameEntries(t, presence(t, b, topic), long)
}

func testPresencePeer(t *testing.T, newBackend Factory, newPeer PeerFactory) {
	b := newBackend(t)
	p := newPeer(t, b)
	topic := newTopic("peer")
	mine := control.PresenceEntry{Topic: topic, Session: "s1", User: "alice", Info: json.RawMessage(`{"x":1}`), Node: "n1"}
	theirs := control.PresenceEntry{Topic: topic, Session: "s2", User: "alice", Node: "n2"}
	update(t, b, control.PresenceUpdate{Add: []control.PresenceEntry{mine}, TTL: time.Minute})
	update(t, p, control.PresenceUpdate{Add: []control.PresenceEntry{theirs}, TTL: time.Minute})
	for name, be := range map[string]control.Backend{"this node": b, "the peer": p} {
		sameEntries(t, presence(t, be, topic), mine, theirs)
		if got, want := stats(t, be, topic), (control.PresenceStats{Sessions: 2, Users: 1}); got != want {
			t.Fatalf("stats on %s = %+v, want %+v", name, got, want)
		}
	}
	update(t, p, control.PresenceUpdate{Remove: []control.PresenceKey{{Topic: topic, Session: "s1"}}})
	sameEntries(t, presence(t, b, topic), theirs)
}
