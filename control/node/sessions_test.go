package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/protocol"
)

// Sessions finds a user's sessions and one session by id, with their
// node, remote address, transport, subscriptions (patterns too) and start; an
// unsubscribe shows; the limit bounds the answer.
func TestSessionsListsAUsersSessions(t *testing.T) {
	h := newHarness(t)
	before := time.Now().Add(-time.Second)
	a := h.dial(t, "alice")
	a.Subscribe("s.one", "s.two")
	b := h.dial(t, "alice")
	b.Subscribe("s.three", "s.w.*")
	other := h.dial(t, "bob")
	other.Subscribe("s.one")
	ctx := context.Background()

	testkit.Eventually(t, 5*time.Second, func() error {
		got, err := h.ctl.Sessions(ctx, node.Target{User: "alice"}, 0)
		if err != nil {
			return err
		}
		if len(got) != 2 {
			return fmt.Errorf("%d sessions of alice, want 2", len(got))
		}
		byID := map[string]node.SessionInfo{}
		for _, s := range got {
			byID[s.Session] = s
		}
		sa, sb := byID[a.Welcome.Session], byID[b.Welcome.Session]
		if !slices.Equal(sa.Subscriptions, []string{"s.one", "s.two"}) || sa.SubscriptionsTotal != 2 {
			return fmt.Errorf("first session's subscriptions %v (%d)", sa.Subscriptions, sa.SubscriptionsTotal)
		}
		if !slices.Equal(sb.Subscriptions, []string{"s.three", "s.w.*"}) {
			return fmt.Errorf("second session's subscriptions %v", sb.Subscriptions)
		}
		for _, s := range got {
			if s.User != "alice" || s.Node != "n1" || s.Transport != "websocket" || s.Remote == "" || s.ConnectedAt.Before(before) {
				return fmt.Errorf("session %+v", s)
			}
		}
		return nil
	})

	a.Send(map[string]any{"op": "unsubscribe", "topic": "s.two"})
	a.Expect("unsubscribed")
	got, err := h.ctl.Sessions(ctx, node.Target{Session: a.Welcome.Session}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Session != a.Welcome.Session || !slices.Equal(got[0].Subscriptions, []string{"s.one"}) {
		t.Fatalf("session by id: %+v", got)
	}

	got, err = h.ctl.Sessions(ctx, node.Target{User: "alice"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Session != a.Welcome.Session {
		t.Fatalf("limit 1 gave %+v, want the oldest session", got)
	}
	if got, err := h.ctl.Sessions(ctx, node.Target{User: "nobody"}, 0); err != nil || len(got) != 0 || got == nil {
		t.Fatalf("unknown user: %v %v, want an empty list", got, err)
	}
}

// Sessions refuses a target that names both or neither, and a limit out
// of bounds.
func TestSessionsRefusesBadQueries(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct {
		t     node.Target
		limit int
	}{
		{node.Target{}, 0},
		{node.Target{User: "u", Session: "s"}, 0},
		{node.Target{User: "u"}, -1},
		{node.Target{User: "u"}, protocol.SessionsLimit.Max + 1},
	} {
		if _, err := h.ctl.Sessions(context.Background(), c.t, c.limit); !errors.Is(err, broker.ErrBadRequest) {
			t.Errorf("Sessions(%+v, %d): %v, want a bad request", c.t, c.limit, err)
		}
	}
}

// A session's listed subscriptions are capped at MaxSessionTopics while
// SubscriptionsTotal counts them all.
func TestSessionsCapsSubscriptions(t *testing.T) {
	h := newHarness(t)
	c := h.dial(t, "many")
	topics := make([]string, node.MaxSessionTopics+5)
	for i := range topics {
		topics[i] = fmt.Sprintf("cap.%03d", i)
	}
	c.Subscribe(topics...)
	got, err := h.ctl.Sessions(context.Background(), node.Target{User: "many"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Subscriptions) != node.MaxSessionTopics || got[0].SubscriptionsTotal != len(topics) {
		t.Fatalf("got %d sessions, %d topics listed of %d", len(got), len(got[0].Subscriptions), got[0].SubscriptionsTotal)
	}
}
