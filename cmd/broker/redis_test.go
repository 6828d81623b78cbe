package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
)

// TestTwoNodesOnOneRedis runs two brokers through run with -redis: a
// message published on one reaches a subscriber on the other, and the
// topic has one offset sequence across both.
func TestTwoNodesOnOneRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startNode(t, nil, "-redis", srv.URL())
	b := startNode(t, map[string]string{"TIDINGS_REDIS": srv.URL()})
	deadline := time.Now().Add(20 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	sub, err := dialWS(ctx, b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Expect("welcome", deadline); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(deadline, "cmd.two.nodes", "cmd.>"); err != nil {
		t.Fatal(err)
	}
	hc := newHTTPClient(t)
	for i, n := range []*node{a, b} {
		status, reply, err := publish(hc, n.addr, "cmd.two.nodes", `{"n":1}`)
		if err != nil || status != http.StatusOK || reply.Offset != uint64(i+1) {
			t.Fatalf("publish on node %d: %d %+v %v, want offset %d", i, status, reply, err, i+1)
		}
	}
	// Each message arrives once per subscription, exact and wildcard, in
	// offset order per subscription.
	next := map[string]uint64{"": 1, "cmd.>": 1}
	for i := 0; i < 4; i++ {
		f, err := sub.Expect("message", deadline)
		if err != nil {
			t.Fatal(err)
		}
		if f.Topic != "cmd.two.nodes" || f.Offset != next[f.Sub] {
			t.Fatalf("got %s offset %d sub %q, want offset %d", f.Topic, f.Offset, f.Sub, next[f.Sub])
		}
		next[f.Sub]++
	}
}
