package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/httpapi"
	wstransport "github.com/tidings-io/tidings/transport/ws"
)

// controlKey signs the control tests' session tokens.
var controlKey = []byte("control-plane-test-key-0123456789abcdef")

// controlNode is a node as cmd/broker wires it with token authentication,
// presence and join/leave on: its control plane runs on the Redis store.
type controlNode struct {
	*node
	ctl *ctlnode.Node
}

// startControlNode starts a control-plane node on cfg; it is stopped at
// cleanup.
func startControlNode(t testing.TB, cfg redis.Config, id string) *controlNode {
	t.Helper()
	st, err := redis.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Config{}, st, wstransport.Encoder{})
	ctl := ctlnode.New(ctlnode.Config{Broker: b, Backend: st, ID: id, Presence: true, JoinLeave: true,
		AnnounceInterval: 200 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, st.Healthy)
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.New(auth.Config{HMACKey: controlKey})
	if err != nil {
		t.Fatal(err)
	}
	verifier.CheckRevocation(ctl.Check)
	wsrv := wstransport.New(wstransport.Config{NodeID: id, CloseTimeout: 2 * time.Second,
		Services: session.Services{Tokens: verifier, Registry: ctl, Presence: ctl}}, b)
	api := httpapi.New(httpapi.Config{Ready: st.Healthy, Control: ctl}, b, wsrv)
	srv := httptest.NewServer(api)
	n := &controlNode{node: &node{store: st, b: b, ws: wsrv, api: api, srv: srv,
		WS: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws", HTTP: srv.URL, closeControl: ctl.Close}, ctl: ctl}
	t.Cleanup(n.stop)
	return n
}

// token signs a session token for sub that may subscribe and publish
// everywhere, with jti when not empty and an info claim naming sub.
func token(t *testing.T, sub, jti string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "subscribe": []string{">"},
		"publish": []string{">"}, "info": map[string]any{"name": "N-" + sub}}
	if jti != "" {
		claims["jti"] = jti
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(controlKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialAs opens a session on n with tk.
func (n *controlNode) dialAs(t *testing.T, tk string) (*wstest.Client, wstest.Frame) {
	t.Helper()
	c := wstest.Dial(t, n.WS+"?token="+tk)
	return c, c.Welcome
}

// call sends a server API request to n and decodes a 200 answer into out
// (when not nil); it returns the status and body.
func (n *controlNode) call(t testing.TB, method, path, body string, out any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, n.HTTP+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s answered %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// mustCall is call that fails the test unless n answers 200.
func (n *controlNode) mustCall(t testing.TB, method, path, body string, out any) {
	t.Helper()
	if status, raw := n.call(t, method, path, body, out); status != http.StatusOK {
		t.Fatalf("%s %s %s: %d %s", method, path, body, status, raw)
	}
}

// presenceEvent is a join or leave frame.
type presenceEvent struct {
	Type    string          `json:"type"`
	Topic   string          `json:"topic"`
	Session string          `json:"session"`
	User    string          `json:"user"`
	Info    json.RawMessage `json:"info"`
}

// expectEvent reads the next frame, which must be the join or leave typ of
// session on topic with user and its info.
func expectEvent(t *testing.T, c *wstest.Client, typ, topic, session, user string) {
	t.Helper()
	checkEvent(t, c.Next(), typ, topic, session, user)
}

// checkEvent checks f is the join or leave typ of session on topic with
// user and its info.
func checkEvent(t *testing.T, f wstest.Frame, typ, topic, session, user string) {
	t.Helper()
	var e presenceEvent
	if err := json.Unmarshal(f.Raw, &e); err != nil || e.Type != typ || e.Topic != topic || e.Session != session || e.User != user ||
		string(e.Info) != `{"name":"N-`+user+`"}` {
		t.Fatalf("got %s, want %s of %s (%s) on %s", f.Raw, typ, session, user, topic)
	}
}

// pingPong checks the session is open and its stream holds nothing
// before the pong.
func pongNext(t *testing.T, c *wstest.Client) {
	t.Helper()
	c.Send(map[string]any{"op": "ping", "ref": "alive"})
	if f := c.Next(); f.Type != "pong" || f.Ref != "alive" {
		t.Fatalf("got %s, want the pong", f.Raw)
	}
}

func TestControlPlaneAcrossNodes(t *testing.T) {
	for _, kind := range []string{"single", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			cfg := backend(t, kind)
			n1, n2, n3 := startControlNode(t, cfg, "n1"), startControlNode(t, cfg, "n2"), startControlNode(t, cfg, "n3")

			t.Run("InfoListsEveryNode", func(t *testing.T) {
				testkit.Eventually(t, wait, func() error {
					var info struct {
						Nodes []struct {
							ID       string  `json:"id"`
							Uptime   float64 `json:"uptime"`
							Sessions *int64  `json:"sessions"`
						} `json:"nodes"`
					}
					n2.mustCall(t, http.MethodGet, "/v1/info", "", &info)
					var ids []string
					for _, nd := range info.Nodes {
						if nd.Sessions == nil || nd.Uptime <= 0 {
							return fmt.Errorf("node without its figures: %+v", nd)
						}
						ids = append(ids, nd.ID)
					}
					if !slices.Equal(ids, []string{"n1", "n2", "n3"}) {
						return fmt.Errorf("nodes %v, want n1 n2 n3", ids)
					}
					return nil
				})
			})

			t.Run("DisconnectAUserOnTwoNodesThroughAThird", func(t *testing.T) {
				a1, _ := n1.dialAs(t, token(t, "alice", ""))
				a2, _ := n2.dialAs(t, token(t, "alice", ""))
				bob, _ := n1.dialAs(t, token(t, "bob", ""))
				n3.mustCall(t, http.MethodPost, "/v1/disconnect", `{"user":"alice","code":4501,"reason":"moved away"}`, nil)
				for _, c := range []*wstest.Client{a1, a2} {
					if ce := c.WaitClose(); ce.Code != 4501 || ce.Reason != "moved away" {
						t.Fatalf("alice closed with %d %q, want 4501 moved away", ce.Code, ce.Reason)
					}
				}
				pongNext(t, bob)
				// By session id, with the default code.
				_, welcome := n2.dialAs(t, token(t, "bob", ""))
				bob2, _ := n2.dialAs(t, token(t, "bob", ""))
				_ = bob2
				n1.mustCall(t, http.MethodPost, "/v1/disconnect", `{"session":"`+welcome.Session+`"}`, nil)
				pongNext(t, bob2)
				pongNext(t, bob)
			})

			t.Run("PresenceAndJoinLeaveOnEveryNode", func(t *testing.T) {
				topic := topicFor(t, "room")
				carol, cw := n1.dialAs(t, token(t, "carol", ""))
				dave, dw := n2.dialAs(t, token(t, "dave", ""))
				carol.Subscribe(topic)
				expectEvent(t, carol, "join", topic, cw.Session, "carol")
				dave.Subscribe(topic)
				// Carol's join crosses to n2 on its own: when it arrives
				// after dave's subscribe, dave sees it first.
				f := dave.Next()
				if f.Session == cw.Session {
					checkEvent(t, f, "join", topic, cw.Session, "carol")
					f = dave.Next()
				}
				checkEvent(t, f, "join", topic, dw.Session, "dave")
				expectEvent(t, carol, "join", topic, dw.Session, "dave")

				type client struct {
					Session, User, Node string
					Info                json.RawMessage
				}
				testkit.Eventually(t, wait, func() error {
					var p struct {
						Topic   string   `json:"topic"`
						Clients []client `json:"clients"`
					}
					n3.mustCall(t, http.MethodGet, "/v1/presence?topic="+topic, "", &p)
					slices.SortFunc(p.Clients, func(a, b client) int { return strings.Compare(a.User, b.User) })
					want := []client{{cw.Session, "carol", "n1", json.RawMessage(`{"name":"N-carol"}`)}, {dw.Session, "dave", "n2", json.RawMessage(`{"name":"N-dave"}`)}}
					if p.Topic != topic || len(p.Clients) != 2 || fmt.Sprint(p.Clients) != fmt.Sprint(want) {
						return fmt.Errorf("presence %+v, want %+v", p, want)
					}
					return nil
				})
				var st struct {
					Topic           string
					Sessions, Users int
				}
				n1.mustCall(t, http.MethodGet, "/v1/presence/stats?topic="+topic, "", &st)
				if st.Topic != topic || st.Sessions != 2 || st.Users != 2 {
					t.Fatalf("stats %+v, want 2 sessions of 2 users", st)
				}
				// The ops, on a WebSocket.
				carol.Send(map[string]any{"op": "presence_stats", "topic": topic, "ref": "ps"})
				f = carol.Expect("presence_stats")
				if f.Ref != "ps" || f.Topic != topic || !strings.Contains(string(f.Raw), `"sessions":2,"users":2`) {
					t.Fatalf("presence_stats op answered %s", f.Raw)
				}
				carol.Send(map[string]any{"op": "presence", "topic": topic, "ref": "p"})
				f = carol.Expect("presence")
				if f.Ref != "p" || !strings.Contains(string(f.Raw), dw.Session) || !strings.Contains(string(f.Raw), cw.Session) {
					t.Fatalf("presence op answered %s", f.Raw)
				}
				// Leave when a session unsubscribes, and when it ends.
				dave.Send(map[string]any{"op": "unsubscribe", "topic": topic, "ref": "u"})
				dave.Expect("unsubscribed")
				expectEvent(t, carol, "leave", topic, dw.Session, "dave")
				dave.Subscribe(topic)
				expectEvent(t, dave, "join", topic, dw.Session, "dave")
				expectEvent(t, carol, "join", topic, dw.Session, "dave")
				dave.CloseNormally()
				expectEvent(t, carol, "leave", topic, dw.Session, "dave")
				testkit.Eventually(t, wait, func() error {
					n2.mustCall(t, http.MethodGet, "/v1/presence/stats?topic="+topic, "", &st)
					if st.Sessions != 1 || st.Users != 1 {
						return fmt.Errorf("stats %+v after dave left, want 1 session of 1 user", st)
					}
					return nil
				})
			})

			t.Run("RevocationClosesLiveSessionsAndRefusesConnects", func(t *testing.T) {
				tk := token(t, "erin", "")
				erin, _ := n2.dialAs(t, tk)
				frank, _ := n3.dialAs(t, token(t, "frank", "tok-1"))
				other, _ := n3.dialAs(t, token(t, "frank", "tok-2"))
				n1.mustCall(t, http.MethodPost, "/v1/revoke", `{"user":"erin"}`, nil)
				if ce := erin.WaitClose(); ce.Code != 1008 || ce.Reason != "token revoked" {
					t.Fatalf("erin closed with %d %q, want 1008 token revoked", ce.Code, ce.Reason)
				}
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				_, err := wstest.Open(ctx, n3.WS+"?token="+tk)
				var refused *wstest.RefusedError
				if !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized || !strings.Contains(string(refused.Body), "token revoked") {
					t.Fatalf("a revoked user's connect: %v, want 401 token revoked", err)
				}
				until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
				n2.mustCall(t, http.MethodPost, "/v1/revoke", `{"jti":"tok-1","until":"`+until+`"}`, nil)
				if ce := frank.WaitClose(); ce.Code != 1008 || ce.Reason != "token revoked" {
					t.Fatalf("frank's tok-1 session closed with %d %q, want 1008 token revoked", ce.Code, ce.Reason)
				}
				pongNext(t, other)
				// Refresh to a revoked token is refused too.
				other.Send(map[string]any{"op": "refresh", "token": token(t, "frank", "tok-1"), "ref": "r"})
				if f := other.Expect("error"); f.Ref != "r" || f.Code != protocol.CodeUnauthorized || f.Message != "token revoked" {
					t.Fatalf("refresh to a revoked token answered %s", f.Raw)
				}
			})

			t.Run("ServerSideSubscribeAndUnsubscribe", func(t *testing.T) {
				topic := topicFor(t, "feed")
				gina, gw := n1.dialAs(t, token(t, "gina", ""))
				r := n3.mustPublish(t, topic, 1)
				since := fmt.Sprintf(`{"offset":0,"epoch":%q}`, r.Epoch)
				n2.mustCall(t, http.MethodPost, "/v1/subscribe", `{"session":"`+gw.Session+`","topic":"`+topic+`","since":`+since+`}`, nil)
				f := gina.Expect("subscribed")
				if f.Has("ref") || f.Topic != topic || !f.Recovered {
					t.Fatalf("server-side subscribe answered %s", f.Raw)
				}
				// The replay and the session's own join, which comes with
				// the node's next presence flush: in either order.
				got := map[string]wstest.Frame{}
				for len(got) < 2 {
					f := gina.Next()
					got[f.Type] = f
				}
				checkEvent(t, got["join"], "join", topic, gw.Session, "gina")
				if f := got["message"]; f.Offset != 1 || f.ID != r.ID {
					t.Fatalf("replay %s", f.Raw)
				}
				r2 := n2.mustPublish(t, topic, 2)
				if f := gina.Expect("message"); f.Offset != 2 || f.ID != r2.ID {
					t.Fatalf("live %s", f.Raw)
				}
				var topics struct {
					Topics []broker.TopicCount `json:"topics"`
				}
				n2.mustCall(t, http.MethodGet, "/v1/topics?pattern="+topicFor(t, ">"), "", &topics)
				if len(topics.Topics) != 1 || topics.Topics[0] != (broker.TopicCount{Topic: topic, Subscribers: 1}) {
					t.Fatalf("topics %+v, want %s with 1 subscriber", topics, topic)
				}
				n3.mustCall(t, http.MethodPost, "/v1/unsubscribe", `{"user":"gina","topic":"`+topic+`"}`, nil)
				f = gina.Next()
				if f.Type != "unsubscribed" || f.Has("ref") || f.Topic != topic {
					t.Fatalf("server-side unsubscribe: got %s", f.Raw)
				}
				// Its own leave does not reach it: it is no longer subscribed.
				pongNext(t, gina)
			})

			t.Run("HistoryIsTheSameOnEveryNode", func(t *testing.T) {
				topic := topicFor(t, "log")
				var ids []string
				for i := 1; i <= 6; i++ {
					ids = append(ids, []*controlNode{n1, n2}[i%2].mustPublish(t, topic, i).ID)
				}
				type history struct {
					Topic     string `json:"topic"`
					Offset    uint64 `json:"offset"`
					Epoch     string `json:"epoch"`
					Recovered bool   `json:"recovered"`
					Messages  []struct {
						ID     string          `json:"id"`
						Offset uint64          `json:"offset"`
						Data   json.RawMessage `json:"data"`
					} `json:"messages"`
				}
				get := func(n *controlNode, query string) (h history, offsets []uint64) {
					t.Helper()
					n.mustCall(t, http.MethodGet, "/v1/history?topic="+topic+query, "", &h)
					for _, m := range h.Messages {
						if m.ID != ids[m.Offset-1] || string(m.Data) != fmt.Sprint(m.Offset) {
							t.Fatalf("history%s on %s: message %+v is not what was published", query, n.HTTP, m)
						}
						offsets = append(offsets, m.Offset)
					}
					return h, offsets
				}
				all, offsets := get(n3, "")
				if all.Offset != 6 || !all.Recovered || !slices.Equal(offsets, []uint64{1, 2, 3, 4, 5, 6}) {
					t.Fatalf("history on n3: %+v", all)
				}
				for _, tc := range []struct {
					n     *controlNode
					query string
					want  []uint64
				}{
					{n1, "&limit=2", []uint64{5, 6}},
					{n2, "&limit=3&reverse=true", []uint64{6, 5, 4}},
					{n3, "&since=4&epoch=" + all.Epoch, []uint64{5, 6}},
					{n1, "&since=1&epoch=" + all.Epoch + "&limit=2", []uint64{2, 3}},
				} {
					if h, got := get(tc.n, tc.query); !h.Recovered || !slices.Equal(got, tc.want) {
						t.Errorf("history%s: %v (recovered %v), want %v", tc.query, got, h.Recovered, tc.want)
					}
				}
				if h, got := get(n2, "&since=3&epoch=stale"); h.Recovered || len(got) != 0 || h.Epoch != all.Epoch {
					t.Errorf("history with a stale epoch: %+v, want recovered false, no messages and the current epoch", h)
				}
			})

			t.Run("BadCallsGetJSONErrors", func(t *testing.T) {
				for _, tc := range []struct{ method, path, body, code string }{
					{http.MethodPost, "/v1/disconnect", `{}`, "bad_request"},
					{http.MethodPost, "/v1/disconnect", `{"user":"u","session":"s"}`, "bad_request"},
					{http.MethodPost, "/v1/disconnect", `{"user":"u","code":1000}`, "bad_request"},
					{http.MethodPost, "/v1/disconnect", `{"user":"u","unknown":1}`, "bad_request"},
					{http.MethodPost, "/v1/disconnect", `[1]`, "bad_request"},
					{http.MethodPost, "/v1/revoke", `{"user":"u","until":"tomorrow"}`, "bad_request"},
					{http.MethodPost, "/v1/revoke", `{"user":"u","until":"2001-01-01T00:00:00Z"}`, "bad_request"},
					{http.MethodPost, "/v1/subscribe", `{"user":"u","topic":"a..b"}`, "bad_request"},
					{http.MethodPost, "/v1/subscribe", `{"user":"u","topic":"a.*","since":{"offset":1,"epoch":"e"}}`, "bad_request"},
					{http.MethodPost, "/v1/unsubscribe", `{"user":"u"}`, "bad_request"},
					{http.MethodGet, "/v1/presence?topic=a.*", "", "bad_request"},
					{http.MethodGet, "/v1/topics?limit=0", "", "bad_request"},
					{http.MethodGet, "/v1/disconnect", "", "method_not_allowed"},
				} {
					status, body := n1.call(t, tc.method, tc.path, tc.body, nil)
					var e struct {
						Error struct{ Code, Message string } `json:"error"`
					}
					if json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != tc.code || e.Error.Message == "" || status < 400 {
						t.Errorf("%s %s %s: %d %s, want a %s error", tc.method, tc.path, tc.body, status, body, tc.code)
					}
				}
			})
		})
	}
}
