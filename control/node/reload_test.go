package node_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/ws"
)

// rules are the per-topic options of the test, which it changes as a
// reload does: the prefix of the topics with presence, and of those
// closed to anonymous sessions.
type rules struct {
	presence, private atomic.Pointer[string]
}

func (r *rules) topics(topic string) (presence, joinLeave bool) {
	return strings.HasPrefix(topic, *r.presence.Load()), false
}

func (r *rules) AnonymousSubscribe(pattern string) bool {
	return !strings.HasPrefix(pattern, *r.private.Load())
}

func (r *rules) ClientPublish(string) session.ClientPublish { return session.PublishAnyone }

// TestPresencePerTopicAndReload: presence is kept for the topics Topics
// names; Reload moves it to those it names after a change, for the
// subscriptions already held, and ends the subscriptions anonymous
// sessions may no longer hold.
func TestPresencePerTopicAndReload(t *testing.T) {
	t.Parallel()
	r := &rules{}
	p, x := "p.", "x."
	r.presence.Store(&p)
	r.private.Store(&x)
	st, b, ctl := startNode(t, broker.Config{}, node.Config{Topics: r.topics})
	wsrv := ws.New(ws.Config{NodeID: "n1", CloseTimeout: time.Second, Services: session.Services{Registry: ctl, Presence: ctl, Rules: r}}, b)
	ts := serve(t, wsrv, wsrv)
	c := wstest.Dial(t, "ws"+strings.TrimPrefix(ts.URL, "http"))
	c.Subscribe("p.a", "q.a", "y.a")
	c.Send(map[string]any{"op": "subscribe", "topic": "x.a", "ref": "x"})
	if f := c.Expect("error"); f.Code != "forbidden" {
		t.Fatalf("anonymous subscribe to x.a: %s", f.Raw)
	}
	sessionsOn := func(topic string, want int) func() error {
		return func() error {
			entries, err := st.Presence(context.Background(), topic)
			if err != nil {
				return err
			}
			if len(entries) != want {
				return fmt.Errorf("%d presence entries on %s, want %d", len(entries), topic, want)
			}
			return nil
		}
	}
	testkit.Eventually(t, 5*time.Second, sessionsOn("p.a", 1))
	if _, err := ctl.Presence(context.Background(), "q.a"); broker.ClientError(err).Code != protocol.CodeBadRequest {
		t.Errorf("presence of q.a, off: %v, want bad_request", err)
	}

	q, y := "q.", "y."
	r.presence.Store(&q)
	r.private.Store(&y)
	ctl.Reload()
	testkit.Eventually(t, 5*time.Second, sessionsOn("q.a", 1))
	testkit.Eventually(t, 5*time.Second, sessionsOn("p.a", 0))
	if _, err := ctl.Presence(context.Background(), "p.a"); broker.ClientError(err).Code != protocol.CodeBadRequest {
		t.Errorf("presence of p.a after the reload: %v, want bad_request", err)
	}
	if f := c.Expect("unsubscribed"); f.Topic != "y.a" || f.Ref != "" {
		t.Errorf("got %s, want unsubscribed y.a without ref", f.Raw)
	}
	// The session's other subscriptions go on; its end removes the new
	// entry.
	c.CloseNormally()
	testkit.Eventually(t, 5*time.Second, sessionsOn("q.a", 0))
}
