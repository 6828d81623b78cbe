package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/store/redis"
)

// pingPong proves a session is still open: a ping op is answered.
func pingPong(t *testing.T, c *wstest.Client) {
	t.Helper()
	c.Send(map[string]any{"op": "ping", "ref": "alive"})
	for {
		f := c.Next()
		if f.Type == "pong" && f.Ref == "alive" {
			return
		}
		if f.Close != nil {
			t.Fatalf("session closed during the outage: %+v", f.Close)
		}
	}
}

func TestRedisOutageAndRecovery(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = time.Second
	cfg := redis.Config{URL: srv.URL(), Timeout: timeout}
	n1, n2 := startNode(t, cfg, "n1"), startNode(t, cfg, "n2")
	topic := topicFor(t, "feed")
	exact := wstest.Dial(t, n2.WS)
	exact.Subscribe(topic)
	wild := wstest.Dial(t, n1.WS)
	wild.Subscribe(topicFor(t, "*"))
	for i := 0; i < 3; i++ {
		n1.mustPublish(t, topic, i)
	}
	epoch := expectMessages(t, exact, topic, 1, 3)
	expectMessages(t, wild, topic, 1, 3)

	// Redis goes away with its data saved.
	srv.Save()
	srv.Kill()
	start := time.Now()
	r := n1.publish(t, topic, "lost?")
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, `"unavailable"`) {
		t.Fatalf("publish during the outage: %d %s, want 503 unavailable", r.Status, r.Body)
	}
	if took := time.Since(start); took > timeout+time.Second {
		t.Fatalf("publish during the outage took %v, bound is %v", took, timeout)
	}
	exact.Send(map[string]any{"op": "publish", "topic": topic, "data": 1, "ref": "ws"})
	if f := exact.Next(); f.Type != "error" || f.Code != "unavailable" {
		t.Fatalf("WebSocket publish during the outage answered %s", f.Raw)
	}
	for _, n := range []*node{n1, n2} {
		testkit.Eventually(t, wait, func() error { return n.wantReadyz(t, http.StatusServiceUnavailable, "redis") })
		resp, err := http.Get(n.HTTP + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz during the outage: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	pingPong(t, exact)
	pingPong(t, wild)

	// Redis comes back with its data: the sequence goes on, nothing repeats.
	srv.Restart()
	for _, n := range []*node{n1, n2} {
		testkit.Eventually(t, wait, func() error { return n.wantReadyz(t, http.StatusOK, "") })
	}
	r = n1.mustPublish(t, topic, 3)
	if r.Offset != 4 || r.Epoch != epoch {
		t.Fatalf("first publish after recovery: offset %d epoch %s, want 4 in %s", r.Offset, r.Epoch, epoch)
	}
	n1.mustPublish(t, topic, 4)
	expectMessages(t, exact, topic, 4, 2)
	expectMessages(t, wild, topic, 4, 2)

	// Redis comes back empty: subscribers learn the new epoch from a reset.
	srv.RestartEmpty()
	testkit.Eventually(t, wait, func() error { return n1.wantReadyz(t, http.StatusOK, "") })
	var fresh publishResult
	testkit.Eventually(t, wait, func() error { fresh = n1.publish(t, topic, "new"); return fresh.err() })
	if fresh.Epoch == epoch || fresh.Offset != 1 {
		t.Fatalf("publish after an empty restart: offset %d epoch %s, want offset 1 in a new epoch", fresh.Offset, fresh.Epoch)
	}
	for _, c := range []*wstest.Client{exact, wild} {
		f := c.Next()
		if f.Type != "reset" || f.Reason != "history_lost" || f.Epoch != fresh.Epoch || f.Offset != 0 {
			t.Fatalf("after an empty restart got %s, want a history_lost reset to %s", f.Raw, fresh.Epoch)
		}
		f = c.Next()
		if f.Type != "message" || f.Offset != 1 || f.Epoch != fresh.Epoch {
			t.Fatalf("after the reset got %s, want offset 1 in %s", f.Raw, fresh.Epoch)
		}
	}
}

func TestGapIsRepairedFromHistory(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redis.Config{URL: srv.URL()}
	n1 := startNode(t, cfg, "n1")
	topic := topicFor(t, "gap")
	c := wstest.Dial(t, n1.WS)
	c.Subscribe(topic)
	n1.mustPublish(t, topic, 1)
	expectMessages(t, c, topic, 1, 1)
	// Drop the node's pub/sub connections: messages published before
	// they are back reach the node only through history.
	client := srv.Client()
	if err := client.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	other := startNode(t, cfg, "n2")
	for i := 0; i < 5; i++ {
		other.mustPublish(t, topic, i)
	}
	expectMessages(t, c, topic, 2, 5)
}

func TestClusterMasterLossAndReturn(t *testing.T) {
	cl := redistest.StartCluster(t)
	const timeout = time.Second
	n1 := startNode(t, redis.Config{ClusterAddrs: cl.Addrs(), Timeout: timeout}, "n1")
	n2 := startNode(t, redis.Config{ClusterAddrs: cl.Addrs(), Timeout: timeout}, "n2")
	// Find a topic whose slot lives on the master we will kill.
	victim := cl.Nodes[0]
	var topic string
	for i := 0; topic == ""; i++ {
		candidate := topicFor(t, fmt.Sprint(i))
		addr, err := cl.MasterOf("tidings:{" + candidate + "}")
		if err != nil {
			t.Fatal(err)
		}
		if addr == victim.Addr() {
			topic = candidate
		}
	}
	sub := wstest.Dial(t, n2.WS)
	sub.Subscribe(topic)
	first := n1.mustPublish(t, topic, 1)
	expectMessages(t, sub, topic, 1, 1)

	victim.Kill()
	start := time.Now()
	r := n1.publish(t, topic, 2)
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("publish to a topic on a dead master: %d %s, want 503", r.Status, r.Body)
	}
	if took := time.Since(start); took > timeout+2*time.Second {
		t.Fatalf("publish to a dead master took %v, bound is %v", took, timeout)
	}
	pingPong(t, sub)
	testkit.Eventually(t, wait, func() error { return n2.wantReadyz(t, http.StatusServiceUnavailable, "redis") })

	// The master comes back without its data: the topic starts a new epoch
	// and its subscribers are told.
	victim.RestartEmpty()
	var fresh publishResult
	testkit.Eventually(t, 30*time.Second, func() error { fresh = n1.publish(t, topic, 3); return fresh.err() })
	if fresh.Epoch == first.Epoch || fresh.Offset != 1 {
		t.Fatalf("after the master returned empty: offset %d epoch %s, want 1 in a new epoch", fresh.Offset, fresh.Epoch)
	}
	f := sub.Next()
	if f.Type != "reset" || f.Reason != "history_lost" || f.Epoch != fresh.Epoch {
		t.Fatalf("subscriber got %s, want a history_lost reset", f.Raw)
	}
	expectMessages(t, sub, topic, 1, 1)
	testkit.Eventually(t, wait, func() error { return n2.wantReadyz(t, http.StatusOK, "") })
}
