package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/client"
	"github.com/tidings-io/tidings/protocol"
)

// Server-side disconnects: 4000–4499 make the client reconnect and
// resume, 4500–4999 stop it with a *CloseError.
func TestSubscribeCloseCodes(t *testing.T) {
	n := startNode(t, nodeConfig{Control: true})
	c := newClient(t, n.URL, client.Config{})
	sub := subscribe(t, c, []string{"cc.a"}, client.SubscribeOptions{})
	publishN(t, c, "cc.a", 1, 2)
	expectRun(t, sub, "cc.a", 1, 2)

	first := sub.Session()
	if err := c.Disconnect(ctxT(t), client.Target{Session: first}, 4000, "come back"); err != nil {
		t.Fatal(err)
	}
	publishN(t, c, "cc.a", 3, 3)
	eventually(t, func() error {
		if s := sub.Session(); s == first || s == "" {
			return fmt.Errorf("session %q, want a new one", s)
		}
		return nil
	})
	publishN(t, c, "cc.a", 6, 1)
	expectRun(t, sub, "cc.a", 3, 4)

	if err := c.Disconnect(ctxT(t), client.Target{Session: sub.Session()}, 4500, "account closed"); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, sub)
	var ce *client.CloseError
	if !errors.As(sub.Err(), &ce) || ce.Code != 4500 || ce.Reason != "account closed" {
		t.Fatalf("Err() = %v, want close 4500 account closed", sub.Err())
	}
	eventually(t, n.sessions(0))

	// The server API checks its input too.
	if err := c.Disconnect(ctxT(t), client.Target{Session: "x"}, 1000, ""); !client.IsCode(err, protocol.CodeBadRequest) {
		t.Errorf("Disconnect with code 1000: %v, want bad_request", err)
	}
}

// The server API round-trips: info, presence, topics, history, and the
// actions on sessions, which the subscription follows.
func TestServerAPI(t *testing.T) {
	n := startNode(t, nodeConfig{Control: true})
	c := newClient(t, n.URL, client.Config{})
	ctx := ctxT(t)

	nodes, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].ID != n.ID || nodes[0].Uptime <= 0 {
		t.Fatalf("Info() = %+v, want node %s", nodes, n.ID)
	}

	var mu sync.Mutex
	var ended []string
	var endErr error
	p := startProxy(t, hostOf(n.URL))
	sub := subscribe(t, newClient(t, p.URL(), client.Config{}), []string{"api.a"}, client.SubscribeOptions{OnUnsubscribed: func(p string, err error) {
		mu.Lock()
		defer mu.Unlock()
		ended, endErr = append(ended, p), err
	}})
	session := sub.Session()

	t.Run("Presence", func(t *testing.T) {
		eventually(t, func() error {
			ps, err := c.Presence(ctx, "api.a")
			if err != nil {
				return err
			}
			if len(ps) != 1 || ps[0].Session != session || ps[0].Node != n.ID || ps[0].User != "" {
				return fmt.Errorf("presence %+v, want session %s", ps, session)
			}
			return nil
		})
		st, err := c.PresenceStats(ctx, "api.a")
		if err != nil || st != (client.PresenceStats{Topic: "api.a", Sessions: 1, Users: 0}) {
			t.Errorf("PresenceStats = %+v, %v", st, err)
		}
		if _, err := c.Presence(ctx, "api.*"); !client.IsCode(err, protocol.CodeBadRequest) {
			t.Errorf("Presence of a pattern: %v, want bad_request", err)
		}
	})

	t.Run("Topics", func(t *testing.T) {
		topics, err := c.Topics(ctx, "api.>", 10)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(topics, []client.TopicCount{{Topic: "api.a", Subscribers: 1}}) {
			t.Errorf("Topics = %+v", topics)
		}
		if topics, err := c.Topics(ctx, "nothing.>", 0); err != nil || len(topics) != 0 {
			t.Errorf("Topics(nothing.>) = %+v, %v", topics, err)
		}
	})

	t.Run("History", func(t *testing.T) {
		publishN(t, c, "api.h", 1, 5)
		h, err := c.History(ctx, "api.h", client.HistoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if h.Topic != "api.h" || h.Position.Offset != 5 || !h.Recovered || len(h.Messages) != 5 {
			t.Fatalf("History = %+v", h)
		}
		since := h.Messages[2].Position()
		h2, err := c.History(ctx, "api.h", client.HistoryOptions{Since: &since, Limit: 1})
		if err != nil || len(h2.Messages) != 1 || h2.Messages[0].Offset != 4 {
			t.Errorf("History since 3, limit 1 = %+v, %v; want offset 4", h2, err)
		}
		h3, err := c.History(ctx, "api.h", client.HistoryOptions{Reverse: true, Limit: 2})
		if err != nil || len(h3.Messages) != 2 || h3.Messages[0].Offset != 5 || h3.Messages[1].Offset != 4 {
			t.Errorf("History reverse, limit 2 = %+v, %v; want offsets 5 4", h3, err)
		}
		stale := client.Position{Offset: 1, Epoch: "stale"}
		h4, err := c.History(ctx, "api.h", client.HistoryOptions{Since: &stale})
		if err != nil || h4.Recovered || len(h4.Messages) != 0 {
			t.Errorf("History of another epoch = %+v, %v; want not recovered", h4, err)
		}
		if _, err := c.History(ctx, "api.*", client.HistoryOptions{}); !client.IsCode(err, protocol.CodeBadRequest) {
			t.Errorf("History of a pattern: %v, want bad_request", err)
		}
	})

	t.Run("ServerSubscribe", func(t *testing.T) {
		// The broker subscribes the session: the client adopts the topic,
		// and resumes it after a reconnect.
		if err := c.ServerSubscribe(ctx, client.Target{Session: sub.Session()}, "api.b", nil); err != nil {
			t.Fatal(err)
		}
		publishN(t, c, "api.b", 1, 2)
		expectRun(t, sub, "api.b", 1, 2)
		p.Cut()
		eventually(t, n.sessions(0))
		publishN(t, c, "api.b", 3, 2)
		p.Restore()
		expectRun(t, sub, "api.b", 3, 2)
	})

	t.Run("Unsubscribe", func(t *testing.T) {
		if err := c.Unsubscribe(ctx, client.Target{Session: sub.Session()}, "api.a"); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(ended, []string{"api.a"}) || !client.IsCode(endErr, protocol.CodeForbidden) {
				return fmt.Errorf("OnUnsubscribed got %q, %v; want api.a, forbidden", ended, endErr)
			}
			return nil
		})
		// api.a is no longer delivered: the next delivery is api.b's.
		publishN(t, c, "api.a", 1, 1)
		publishN(t, c, "api.b", 5, 1)
		expectRun(t, sub, "api.b", 5, 1)
	})
}

// Revoke closes the user's sessions with 1008 `token revoked`; the
// client reconnects with a fresh token from TokenFunc, is refused (401)
// three times in a row, and stops.
func TestRevokeStopsAfterThreeRefusals(t *testing.T) {
	n := startNode(t, nodeConfig{Control: true, JWTKey: jwtKey})
	admin := newClient(t, n.URL, client.Config{})
	var mu sync.Mutex
	calls := 0
	c := newClient(t, n.URL, client.Config{TokenFunc: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return sign(t, "mallory", ">"), nil
	}})
	sub := subscribe(t, c, []string{"rev.a"}, client.SubscribeOptions{})
	eventually(t, n.sessions(1))
	if err := admin.Revoke(ctxT(t), client.Revocation{User: "mallory", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, sub)
	var e *client.Error
	if !errors.As(sub.Err(), &e) || e.Code != protocol.CodeUnauthorized || e.Status != 401 {
		t.Fatalf("Err() = %v, want 401 unauthorized", sub.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 4 {
		t.Errorf("TokenFunc called %d times, want 4: the first connection and three refused", calls)
	}
}
