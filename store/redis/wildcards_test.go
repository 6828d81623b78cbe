package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/redis"
)

// TestClusterWildcardMarkReadWhileAMasterStalls: a node reads another's
// new wildcard subscription in time even while an unrelated master does
// not answer, so a publish made as soon as the Watch returns reaches it.
func TestClusterWildcardMarkReadWhileAMasterStalls(t *testing.T) {
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	cfg := redis.Config{ClusterAddrs: cl.Addrs(), Timeout: 3 * time.Second}
	pub, sub := newStore(t, cfg), newStore(t, cfg)
	seq := &sequence{}
	sub.Listen(seq)
	masterOf := func(key string) string {
		m, err := cl.MasterOf(key)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// The master that stalls holds neither the wildcards key nor the
	// control channel (the subscriber's pattern subscriptions share its
	// connection), nor the topic.
	live := map[string]bool{masterOf("tidings:wildcards"): true, masterOf("tidings:control"): true}
	var stalled *redistest.Server
	for _, n := range cl.Nodes {
		if !live[n.Addr()] {
			stalled = n
		}
	}
	var topic string
	for k := 0; topic == ""; k++ {
		if live[masterOf(fmt.Sprintf("tidings:{ws.%d}", k))] {
			topic = fmt.Sprintf("ws.%d", k)
		}
	}
	// Its clients wait; the cluster bus does not, so the cluster stays up.
	if err := stalled.Client().Do(ctx, "CLIENT", "PAUSE", "6000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Watch(ctx, "ws.*"); err != nil {
		t.Fatal(err)
	}
	msgs := onTopics(1, 10, topic)
	if err := pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := len(seq.of(topic)); n != 1 {
			return fmt.Errorf("%d deliveries through the wildcard, want 1", n)
		}
		return nil
	})
}
