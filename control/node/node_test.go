package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var key = []byte("node-test-key-0123456789abcdef-0123456789")

// harness is one node on the memory store: broker, control plane, a
// WebSocket server with token authentication, and the HTTP API.
type harness struct {
	b     *broker.Broker
	ctl   *node.Node
	wsrv  *ws.Server
	wsURL string
	// staying signals each message the session that stays reads.
	staying chan struct{}
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	_, b, ctl := startNode(t, broker.Config{QueueSize: 8}, node.Config{Presence: true})
	v, err := auth.New(auth.Config{HMACKey: key})
	if err != nil {
		t.Fatal(err)
	}
	v.CheckRevocation(ctl.Check)
	wsrv := ws.New(ws.Config{NodeID: "n1", CloseTimeout: time.Second, WriteTimeout: time.Second, Services: session.Services{Tokens: v, Registry: ctl, Presence: ctl}}, b)
	ts := serve(t, wsrv, httpapi.New(httpapi.Config{Control: ctl}, b, wsrv))
	return &harness{b: b, ctl: ctl, wsrv: wsrv, staying: make(chan struct{}, 1), wsURL: "ws" + strings.TrimPrefix(ts.URL, "http") + "/v1/ws"}
}

// startNode starts node n1, with cfg, on a broker with bcfg on a memory
// store, flushing every 10 ms; node and store close when the test ends.
func startNode(t *testing.T, bcfg broker.Config, cfg node.Config) (*memory.Store, *broker.Broker, *node.Node) {
	t.Helper()
	st := memory.New(memory.Config{})
	b := broker.New(bcfg, st, ws.Encoder{})
	cfg.Broker, cfg.Backend, cfg.ID, cfg.FlushInterval = b, st, "n1", 10*time.Millisecond
	ctl := node.New(cfg)
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctl.Close()
		_ = st.Close()
	})
	return st, b, ctl
}

// serve serves h on a test server; when the test ends it shuts wsrv down
// and closes the server, before the node started earlier closes.
func serve(t *testing.T, wsrv *ws.Server, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wsrv.Shutdown(ctx)
		ts.Close()
	})
	return ts
}

func (h *harness) dial(t *testing.T, sub string) *wstest.Client {
	t.Helper()
	tk, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(),
		"subscribe": []string{">"}}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return wstest.Dial(t, h.wsURL+"?token="+tk)
}

// presence waits until topic's presence holds exactly sessions.
func (h *harness) presence(t *testing.T, topic string, sessions ...string) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, func() error {
		entries, err := h.ctl.Presence(context.Background(), topic)
		if err != nil {
			return err
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Session)
		}
		if fmt.Sprint(sortStrings(got)) != fmt.Sprint(sortStrings(sessions)) {
			return fmt.Errorf("presence of %s is %v, want %v", topic, got, sessions)
		}
		return nil
	})
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// A session's presence goes however the session ends: the client's
// close, a dropped connection, unsubscribe, slow consumer, revocation,
// the server API's disconnect and shutdown.
func TestPresenceIsRemovedHoweverASessionEnds(t *testing.T) {
	h := newHarness(t)
	ends := []struct {
		name string
		end  func(t *testing.T, c *wstest.Client, topic string)
	}{
		{"close", func(t *testing.T, c *wstest.Client, _ string) { c.CloseNormally() }},
		{"drop", func(t *testing.T, c *wstest.Client, _ string) { _ = c.Conn.Close() }},
		{"unsubscribe", func(t *testing.T, c *wstest.Client, topic string) {
			c.Send(map[string]any{"op": "unsubscribe", "topic": topic})
			c.Expect("unsubscribed")
		}},
		{"slow_consumer", func(t *testing.T, c *wstest.Client, topic string) {
			// One message at a time, each once the session that stays has
			// it, until c, which reads nothing, is cut.
			data := json.RawMessage(`"` + strings.Repeat("x", 32<<10) + `"`)
			before := h.b.Stats().SlowConsumers
			for i := 0; h.b.Stats().SlowConsumers == before; i++ {
				if i == 5000 {
					t.Fatal("no slow consumer after 5000 messages")
				}
				if _, err := h.b.Publish(context.Background(), []broker.Publication{{Topic: topic, Data: data}}); err != nil {
					t.Fatal(err)
				}
				select {
				case <-h.staying:
				case <-time.After(5 * time.Second):
					t.Fatal("the session that stays got no message")
				}
			}
		}},
		{"revoke", func(t *testing.T, c *wstest.Client, _ string) {
			if err := h.ctl.Revoke(context.Background(), control.Revocation{User: c.Welcome.User}); err != nil {
				t.Fatal(err)
			}
			if ce := c.WaitClose(); ce.Code != 1008 || ce.Reason != "token revoked" {
				t.Fatalf("closed with %d %q", ce.Code, ce.Reason)
			}
		}},
		{"disconnect", func(t *testing.T, c *wstest.Client, _ string) {
			if err := h.ctl.Disconnect(context.Background(), node.Target{Session: c.Welcome.Session}, 4100, ""); err != nil {
				t.Fatal(err)
			}
			if ce := c.WaitClose(); ce.Code != 4100 || ce.Reason != "disconnected" {
				t.Fatalf("closed with %d %q", ce.Code, ce.Reason)
			}
		}},
	}
	for _, e := range ends {
		t.Run(e.name, func(t *testing.T) {
			topic := "p." + e.name
			stay := h.dial(t, "stay-"+e.name)
			stay.Subscribe(topic)
			if e.name == "slow_consumer" {
				// The session that stays reads what comes, so that only the
				// other one is slow.
				done := make(chan struct{})
				go func() {
					defer close(done)
					for {
						f, err := stay.Conn.Next(time.Now().Add(time.Minute))
						if err != nil {
							return
						}
						if f.Type == "message" {
							h.staying <- struct{}{}
						}
					}
				}()
				t.Cleanup(func() { _ = stay.Conn.Close(); <-done })
			}
			c := h.dial(t, "u-"+e.name)
			c.Subscribe(topic)
			h.presence(t, topic, stay.Welcome.Session, c.Welcome.Session)
			e.end(t, c, topic)
			h.presence(t, topic, stay.Welcome.Session)
		})
	}
	t.Run("shutdown", func(t *testing.T) {
		c := h.dial(t, "u-shutdown")
		c.Subscribe("p.shutdown")
		h.presence(t, "p.shutdown", c.Welcome.Session)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.wsrv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		h.presence(t, "p.shutdown")
	})
}
