package client_test

import (
	"testing"

	"github.com/tidings-io/tidings/client"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/store/redis"
)

// startRedisNode starts a node on its own store client of the Redis at
// cfg; it stops when the test ends (or earlier, with shutdown).
func startRedisNode(t *testing.T, cfg redis.Config, id string) *node {
	t.Helper()
	st, err := redis.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, st.Healthy)
	n := newNode(st, nodeConfig{ID: id})
	t.Cleanup(func() {
		n.shutdown()
		_ = st.Close()
	})
	return n
}

// publishFrom publishes from..from+n-1 to topic in a goroutine; it
// closes half once half of them are published, and reports on done.
func publishFrom(t *testing.T, c *client.Client, topic string, from, n int) (half <-chan struct{}, done <-chan error) {
	h, d := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := from; i < from+n; i++ {
			if i == from+n/2 {
				close(h)
			}
			if _, err := c.Publish(ctxT(t), topic, i); err != nil {
				d <- err
				return
			}
		}
		d <- nil
	}()
	return h, d
}

// Two nodes on one Redis. The node the client is on shuts down (1001)
// while messages are published: the client moves to the other node,
// resumes, and gets every message once, in order. Then that node goes
// too, and a new node takes over the same way.
func TestSubscribeAcrossNodeRestarts(t *testing.T) {
	cfg := redis.Config{URL: redistest.Start(t).URL()}
	a := startRedisNode(t, cfg, "node-a")
	b := startRedisNode(t, cfg, "node-b")
	p := startProxy(t, hostOf(a.URL))
	var rs resets
	logger, logs := newLogRecorder()
	sub := subscribe(t, newClient(t, p.URL(), client.Config{Logger: logger}), []string{"ha.a"}, client.SubscribeOptions{OnReset: rs.add})
	if sub.Node() != "node-a" {
		t.Fatalf("on %q, want node-a", sub.Node())
	}

	pubB := newClient(t, b.URL, client.Config{})
	publishN(t, pubB, "ha.a", 1, 10)
	expectRun(t, sub, "ha.a", 1, 10)

	// Node a shuts down mid-stream; the proxy now leads to node b.
	half, done := publishFrom(t, pubB, "ha.a", 11, 60)
	<-half
	p.Point(hostOf(b.URL))
	a.shutdown()
	expectRun(t, sub, "ha.a", 11, 60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sub.Node() != "node-b" {
		t.Errorf("on %q, want node-b", sub.Node())
	}

	// A new node starts; node b shuts down mid-stream.
	a2 := startRedisNode(t, cfg, "node-a2")
	pubA2 := newClient(t, a2.URL, client.Config{})
	half, done = publishFrom(t, pubA2, "ha.a", 71, 60)
	<-half
	p.Point(hostOf(a2.URL))
	b.shutdown()
	expectRun(t, sub, "ha.a", 71, 60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sub.Node() != "node-a2" {
		t.Errorf("on %q, want node-a2", sub.Node())
	}
	if r := rs.list(); len(r) != 0 {
		t.Errorf("resets %+v, want none", r)
	}
	if got := logs.count(`closed by the broker: 1001 "server shutting down"`); got != 2 {
		t.Errorf("%d disconnects with 1001 logged, want 2", got)
	}
	if got := sub.Positions()["ha.a"]; got.Offset != 130 {
		t.Errorf("position %+v, want 130", got)
	}
}

// Redis restarts empty: the broker sends `reset` history_lost, the client
// calls OnReset (before the next delivery of the topic, for exact and
// wildcard subscriptions), moves the position, and delivers the new
// epoch from offset 1.
func TestSubscribeResetHistoryLost(t *testing.T) {
	srv := redistest.Start(t)
	n := startRedisNode(t, redis.Config{URL: srv.URL()}, "node-a")
	c := newClient(t, n.URL, client.Config{})
	var rs resets
	sub := subscribe(t, c, []string{"hl.a", "hlw.>"}, client.SubscribeOptions{OnReset: rs.add})
	publishN(t, c, "hl.a", 1, 2)
	expectRun(t, sub, "hl.a", 1, 2)
	publishN(t, c, "hlw.x", 1, 1)
	expectRun(t, sub, "hlw.x", 1, 1)
	old := sub.Positions()["hl.a"].Epoch

	srv.RestartEmpty()
	var fresh client.Published
	eventually(t, func() error {
		var err error
		fresh, err = c.Publish(ctxT(t), "hl.a", 1)
		return err
	})
	if fresh.Offset != 1 || fresh.Epoch == old {
		t.Fatalf("publish after the empty restart: %+v, want offset 1 in a new epoch", fresh)
	}
	if _, err := c.Publish(ctxT(t), "hlw.x", 1); err != nil {
		t.Fatal(err)
	}
	got := map[string]client.Delivery{}
	for range 2 {
		d := next(t, sub)
		got[d.Topic] = d
		// OnReset came first.
		found := false
		for _, r := range rs.list() {
			found = found || r.Topic == d.Topic && r.Reason == client.ResetHistoryLost && r.Epoch == d.Epoch && r.Offset == 0
		}
		if !found {
			t.Fatalf("delivery %s %d in %s before its reset; resets %+v", d.Topic, d.Offset, d.Epoch, rs.list())
		}
	}
	if d := got["hl.a"]; d.Offset != 1 || d.Epoch != fresh.Epoch || d.Sub != "" {
		t.Errorf("hl.a delivery %+v, want offset 1 in %s", d, fresh.Epoch)
	}
	if d := got["hlw.x"]; d.Offset != 1 || d.Sub != "hlw.>" {
		t.Errorf("hlw.x delivery %+v, want offset 1 via hlw.>", d)
	}
	for _, r := range rs.list() {
		if r.Topic == "hlw.x" && r.Sub != "hlw.>" {
			t.Errorf("wildcard reset %+v, want Sub hlw.>", r)
		}
	}
	if got := sub.Positions()["hl.a"]; got != (client.Position{Offset: 1, Epoch: fresh.Epoch}) {
		t.Errorf("position %+v, want 1 in %s", got, fresh.Epoch)
	}
}
