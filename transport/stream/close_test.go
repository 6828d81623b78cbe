package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/stream"
)

func TestShutdownSends1001AfterEverythingQueued(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")
	c.mustPost(`{"op":"subscribe","topic":"a"}`)
	c.expect("subscribed")
	var sent []*broker.Message
	for i := range 50 {
		sent = append(sent, testkit.Publish(t, e.b, "a", fmt.Sprint(i)))
	}
	c.mustPost(`{"op":"publish","topic":"a","data":"last","ref":"p"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent {
		c.expectMessage(m, "")
	}
	// The POST's publish: its message and its answer, in either order.
	for range 2 {
		if m := decode(t, c.next().payload); m["type"] != "message" && m["type"] != "published" {
			t.Fatalf("frame %v", m)
		}
	}
	c.expectClose(1001, "server shutting down")
	if st := e.srv.Stats(); st.CloseSent[1001] != 1 || st.Sessions != 0 {
		t.Fatalf("stats %+v", st)
	}
	resp, err := e.ts.Client().Get(e.url())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET after shutdown: %d, want 503", resp.StatusCode)
	}
	if status, _ := c.post(`{"op":"ping"}`); status != http.StatusNotFound && status != http.StatusServiceUnavailable {
		t.Fatalf("POST after shutdown: %d", status)
	}
}

func TestSlowConsumerIsClosedWith1008(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{}, envOpts{broker: broker.Config{QueueSize: 4}})
	c := e.openPaused(t, "")
	c.mustPost(`{"op":"subscribe","topic":"a"}`)
	testkit.Eventually(t, 5*time.Second, func() error {
		if e.b.Stats().ExactSubscriptions != 1 {
			return fmt.Errorf("not subscribed yet")
		}
		return nil
	})
	pubs := make([]broker.Publication, 200)
	for i := range pubs {
		pubs[i] = broker.Publication{Topic: "a", Data: json.RawMessage(`1`)}
	}
	// The client reads nothing: its queue of four overflows.
	testkit.Eventually(t, 10*time.Second, func() error {
		if _, err := e.b.Publish(context.Background(), pubs); err != nil {
			return err
		}
		if e.b.Stats().SlowConsumers == 0 {
			return fmt.Errorf("no slow consumer yet")
		}
		return nil
	})
	c.resume()
	// Some of what was written before the overflow (the frames still
	// queued then are dropped, as on a WebSocket, the welcome too if the
	// writer had not run yet), then the close.
	f := c.next()
	for f.op == 1 {
		if typ := decode(t, f.payload)["type"]; typ != "welcome" && typ != "subscribed" && typ != "message" {
			t.Fatalf("frame %s", f.payload)
		}
		f = c.next()
	}
	c.isClose(f, 1008, "slow consumer")
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := e.srv.Sessions(); n != 0 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
}

// registry keeps the sessions the server registers.
type registry struct{ added chan *session.Session }

func (r *registry) Add(s *session.Session)  { r.added <- s }
func (r *registry) Remove(*session.Session) {}

func TestDisconnectClosesWithItsCode(t *testing.T) {
	t.Parallel()
	reg := &registry{added: make(chan *session.Session, 1)}
	e := newEnv(t, stream.Config{Services: session.Services{Registry: reg}}, envOpts{})
	c := e.open(t, "")
	w := c.expect("welcome")
	s := <-reg.added
	if s.ID() != w["session"] {
		t.Fatalf("registered %s, welcome %v", s.ID(), w)
	}
	s.Disconnect(4321, "bye")
	c.expectClose(4321, "bye")
}

func TestClientEndingTheGetEndsTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stream.Config{}, envOpts{})
	c := e.open(t, "")
	c.expect("welcome")
	c.mustPost(`{"op":"subscribe","topic":"gone"}`)
	c.expect("subscribed")
	c.close()
	testkit.Eventually(t, 5*time.Second, func() error {
		if n, subs := e.srv.Sessions(), e.b.Stats().ExactSubscriptions; n != 0 || subs != 0 {
			return fmt.Errorf("%d sessions, %d subscriptions after the client left", n, subs)
		}
		return nil
	})
	if status, er := c.post(`{"op":"ping"}`); status != http.StatusNotFound || er.Code != protocol.CodeNotFound {
		t.Fatalf("POST to the ended session: %d %+v", status, er)
	}
}
