package redis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/control/controltest"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/redis"
)

// controlConformance runs the control suite on stores of cfg: the peer is
// another store (node) on the same Redis.
func controlConformance(t *testing.T, cfg redis.Config) {
	newNode := func(t *testing.T) control.Backend { return newStore(t, cfg) }
	controltest.Run(t, newNode, func(t *testing.T, _ control.Backend) control.Backend { return newNode(t) })
}

func TestControlConformanceSingleRedis(t *testing.T) {
	srv := redistest.Start(t)
	controlConformance(t, redis.Config{URL: srv.URL()})
}

func TestControlConformanceRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	controlConformance(t, redis.Config{ClusterAddrs: cl.Addrs()})
}

func presenceStats(t *testing.T, s *redis.Store, topic string) control.PresenceStats {
	t.Helper()
	st, err := s.PresenceStats(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// An update runs one script per topic, all in one pipeline.
func TestPresenceUpdateRunsOneScriptPerTopic(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	update := func(topics, perTopic int) {
		var add []control.PresenceEntry
		for i := range topics * perTopic {
			add = append(add, control.PresenceEntry{Topic: fmt.Sprintf("rt.%d", i%topics), Session: fmt.Sprint(i), User: "u", Node: "n"})
		}
		if err := s.UpdatePresence(t.Context(), control.PresenceUpdate{Add: add, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	update(1, 1) // loads the script
	before := commandCalls(t, srv, "evalsha")
	update(10, 3)
	if d := commandCalls(t, srv, "evalsha") - before; d != 10 {
		t.Fatalf("an update of 10 topics ran EVALSHA %d times, want 10", d)
	}
}

// When Redis lost its script cache, an update runs the script's text.
func TestPresenceUpdateAfterScriptCacheLoss(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	add := func(topic, session string) error {
		return s.UpdatePresence(t.Context(), control.PresenceUpdate{TTL: time.Minute,
			Add: []control.PresenceEntry{{Topic: topic, Session: session, User: session, Node: "n"}}})
	}
	if err := add("flush.a", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client().ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := add("flush.a", "s2"); err != nil {
		t.Fatalf("update after SCRIPT FLUSH: %v", err)
	}
	if got := presenceStats(t, s, "flush.a"); got != (control.PresenceStats{Sessions: 2, Users: 2}) {
		t.Fatalf("stats after SCRIPT FLUSH = %+v, want 2 sessions, 2 users", got)
	}
}

// The keys of a topic whose entries all expired vanish on their own, a
// little after the last expiry, whether or not anyone reads them.
func TestPresenceKeysVanishAfterTheirEntries(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	topic := "vanish." + uuid.NewString()
	ttl := 300 * time.Millisecond
	err := s.UpdatePresence(t.Context(), control.PresenceUpdate{TTL: ttl,
		Add: []control.PresenceEntry{{Topic: topic, Session: "s1", User: "alice", Node: "n"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := srv.Client()
	keys := []string{"tidings:{" + topic + "}:presence", "tidings:{" + topic + "}:presence:exp", "tidings:{" + topic + "}:presence:users"}
	for _, k := range keys {
		pttl, err := c.PTTL(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if pttl <= 0 || pttl > ttl+redisControlLinger {
			t.Fatalf("%s expires in %v, want within the TTL and the linger (%v)", k, pttl, ttl+redisControlLinger)
		}
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		n, err := c.Exists(t.Context(), keys...).Result()
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d of the topic's presence keys are left", n)
		}
		return nil
	})
}

// redisControlLinger mirrors the store's controlLinger.
const redisControlLinger = time.Second

// A session added again with another user moves between users' counts;
// a user Redis reads differently from the node (invalid UTF-8, which the
// JSON carries as U+FFFD) is counted and uncounted alike.
func TestPresenceUsersFollowTheEntries(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	topic := "users." + uuid.NewString()
	update := func(u control.PresenceUpdate) {
		t.Helper()
		u.TTL = time.Minute
		if err := s.UpdatePresence(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(session, user string) control.PresenceEntry {
		return control.PresenceEntry{Topic: topic, Session: session, User: user, Node: "n"}
	}
	update(control.PresenceUpdate{Add: []control.PresenceEntry{entry("s1", ""), entry("s2", "bad\xff")}})
	update(control.PresenceUpdate{Add: []control.PresenceEntry{entry("s1", "alice")}})
	if got := presenceStats(t, s, topic); got != (control.PresenceStats{Sessions: 2, Users: 2}) {
		t.Fatalf("after the anonymous session signed in: %+v, want 2 sessions, 2 users", got)
	}
	update(control.PresenceUpdate{Add: []control.PresenceEntry{entry("s1", "bob")}})
	list, err := s.Presence(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if got := presenceStats(t, s, topic); got != (control.PresenceStats{Sessions: 2, Users: 2}) || len(list) != 2 {
		t.Fatalf("after s1 changed user: %+v, %d entries; want 2 sessions, 2 users", got, len(list))
	}
	update(control.PresenceUpdate{Remove: []control.PresenceKey{{Topic: topic, Session: "s1"}, {Topic: topic, Session: "s2"}}})
	if got := presenceStats(t, s, topic); got != (control.PresenceStats{}) {
		t.Fatalf("after removing both: %+v, want zero", got)
	}
	n, err := srv.Client().Exists(t.Context(), "tidings:{"+topic+"}:presence:users").Result()
	if err != nil || n != 0 {
		t.Fatalf("users hash left after the last entry went: exists %d, %v", n, err)
	}
}

// Broadcasts reach a node again once Redis is back after a restart: the
// control channel is subscribed again on reconnect.
func TestBroadcastResumesAfterRedisRestarts(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redis.Config{URL: srv.URL()}
	a, b := newStore(t, cfg), newStore(t, cfg)
	got := make(chan string, 1024)
	b.OnBroadcast(func(msg []byte) {
		select {
		case got <- string(msg):
		default:
		}
	})
	heard := func(what string) {
		t.Helper()
		n := 0
		testkit.Eventually(t, 20*time.Second, func() error {
			n++
			want := fmt.Sprintf("%s %d", what, n)
			if err := a.Broadcast(t.Context(), []byte(want)); err != nil {
				return err
			}
			for {
				select {
				case m := <-got:
					if m == want {
						return nil
					}
				case <-time.After(20 * time.Millisecond):
					return fmt.Errorf("%q not received", want)
				}
			}
		})
	}
	heard("before")
	srv.Restart()
	heard("after")
}

// A closed store refuses control work with ErrClosed.
func TestClosedStoreRefusesControl(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Broadcast(t.Context(), []byte("x")); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("Broadcast on a closed store: %v, want ErrClosed", err)
	}
	if _, err := s.Nodes(t.Context()); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("Nodes on a closed store: %v, want ErrClosed", err)
	}
}

// Revocations and announcements keep their hash layout: records another
// node wrote are read, and those expired or unreadable on Redis's clock
// are deleted by the reader.
func TestControlRecordsLayout(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	c := srv.Client()
	ctx := t.Context()
	ahead := time.Now().Add(time.Hour).UnixMilli()
	past := time.Now().Add(-time.Hour).UnixMilli()
	if err := c.HSet(ctx, "tidings:revoked",
		"user:alice", fmt.Sprint(ahead), "jti:t1", fmt.Sprint(past), "user:bob", "soon").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, "tidings:nodes",
		"n1", fmt.Sprintf(`{"expires":%d,"node":{"id":"n1"}}`, ahead),
		"n2", fmt.Sprintf(`{"expires":%d,"node":{"id":"n2"}}`, past),
		"n3", `{"node":{"id":"n3"}}`).Err(); err != nil {
		t.Fatal(err)
	}
	revs, err := s.Revocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 1 || revs[0].User != "alice" || revs[0].Until.UnixMilli() != ahead {
		t.Errorf("Revocations = %+v, want alice's until %d", revs, ahead)
	}
	nodes, err := s.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].ID != "n1" {
		t.Errorf("Nodes = %+v, want n1", nodes)
	}
	for key, want := range map[string][]string{"tidings:revoked": {"user:alice"}, "tidings:nodes": {"n1"}} {
		left, err := c.HKeys(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0] != want[0] {
			t.Errorf("%s keeps %v, want %v", key, left, want)
		}
	}
}
