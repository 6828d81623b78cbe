package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/httpapi"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// rawValues are JSON values that a re-encoding would change: HTML
// characters, line separators, escaped and raw non-ASCII, numbers beyond
// float64, insignificant whitespace and every kind of string escape.
// PROTOCOL.md: `data` is delivered exactly as the publisher sent it.
var rawValues = []string{
	`"<b>&amp;</b>"`,
	`{"s":"<b>&amp;</b>"}`,
	"\"a\u2028b\u2029c\"",
	`"a\u2028b\u2029c"`,
	`"é"`,
	`"\u00e9"`,
	`"😀"`,
	`"\ud83d\ude00"`,
	`"\u00E9\uD83D\uDE00"`,
	`"\udc00"`,
	`1e400`,
	`-0`,
	`0.10`,
	`12345678901234567890123`,
	`{ "a" : [ 1 , 2 ] }`,
	"{\n\t\"a\":\t[1,\r\n\t\t2]\n}",
	`[ { } , [ ] , "" ]`,
	`"a\/b"`,
	`"say \"hi\" \\ there"`,
	`"\b\f\n\r\t\u0000\u001f\u007f"`,
	`[true,false,null]`,
	`null`,
}

// rawPublisher publishes values, in order, to topic on a node, with
// request bodies that hold each value exactly as listed.
type rawPublisher struct {
	name    string
	publish func(t *testing.T, n *node, topic string, values []string)
}

var rawPublishers = []rawPublisher{
	{"http", publishRawHTTP},
	{"ws", publishRawWS},
	{"batch", publishRawBatch},
}

// postRaw posts body to the node's path and returns the status and answer.
func postRaw(t *testing.T, n *node, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(n.HTTP+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// publishRawHTTP posts each value on its own to /v1/publish.
func publishRawHTTP(t *testing.T, n *node, topic string, values []string) {
	t.Helper()
	for _, v := range values {
		body := `{"topic":"` + topic + `","data":` + v + `}`
		if status, answer := postRaw(t, n, "/v1/publish", body); status != http.StatusOK {
			t.Fatalf("publishing %q: %d %s", body, status, answer)
		}
	}
}

// publishRawBatch posts every value in one /v1/publish/batch.
func publishRawBatch(t *testing.T, n *node, topic string, values []string) {
	t.Helper()
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = `{"topic":"` + topic + `","data":` + v + `}`
	}
	body := `{"messages":[` + strings.Join(parts, ",") + `]}`
	if status, answer := postRaw(t, n, "/v1/publish/batch", body); status != http.StatusOK {
		t.Fatalf("publishing %q: %d %s", body, status, answer)
	}
}

// publishRawWS sends each value in a WebSocket publish command of its own,
// from a loopback session, and waits for each `published` answer.
func publishRawWS(t *testing.T, n *node, topic string, values []string) {
	t.Helper()
	c := wstest.Dial(t, n.WS)
	for i, v := range values {
		ref := fmt.Sprintf("p%d", i)
		cmd := `{"op":"publish","ref":"` + ref + `","topic":"` + topic + `","data":` + v + `}`
		if err := c.Conn.WriteFrame(ws.NewTextFrame([]byte(cmd))); err != nil {
			t.Fatalf("sending %q: %v", cmd, err)
		}
		if f := c.Next(); f.Type != "published" || f.Ref != ref {
			t.Fatalf("publishing %q answered %s", cmd, f.Raw)
		}
	}
	_ = c.Conn.Close()
}

// expectRawData reads the messages with offsets from, from+1, … on topic
// and checks that the `data` member of each frame holds the bytes of the
// matching value exactly. sub is the pattern a wildcard subscription
// matched, or "". It returns the messages' epoch.
func expectRawData(t *testing.T, c *wstest.Client, path, topic, sub string, from uint64, values []string) string {
	t.Helper()
	epoch := ""
	for i, want := range values {
		f := c.Next()
		if f.Type != "message" || f.Topic != topic || f.Offset != from+uint64(i) || f.Sub != sub {
			t.Fatalf("%s: got %s, want message %d on %s", path, f.Raw, from+uint64(i), topic)
		}
		if epoch == "" {
			epoch = f.Epoch
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(f.Raw, &fields); err != nil {
			t.Fatalf("%s: frame %q: %v", path, f.Raw, err)
		}
		if got := fields["data"]; !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s: offset %d carries data %q, published %q", path, f.Offset, got, want)
		}
	}
	return epoch
}

// startMemoryNode starts a node on the embedded in-memory store, wired as
// startNode wires a Redis one; it is stopped at cleanup.
func startMemoryNode(t *testing.T) *node {
	t.Helper()
	st := memory.New(memory.Config{})
	b := broker.New(broker.Config{QueueSize: 100000, QueueBytes: 1 << 28}, st, wsserver.Encoder{})
	wsrv := wsserver.New(wsserver.Config{NodeID: "m1", CloseTimeout: 2 * time.Second}, b)
	api := httpapi.New(httpapi.Config{}, b, wsrv)
	srv := httptest.NewServer(api)
	n := &node{b: b, ws: wsrv, api: api, srv: srv,
		WS: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws", HTTP: srv.URL}
	t.Cleanup(func() {
		api.BeginShutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Config.SetKeepAlivesEnabled(false)
		_ = wsrv.Shutdown(ctx)
		srv.Close()
		_ = st.Close()
	})
	return n
}

// TestDataIsDeliveredByteForByte: whichever way a value is published, and
// whichever way it travels (within a node, across nodes through Redis or
// Redis Cluster, to exact and wildcard subscribers, replayed from history
// on resume), subscribers receive the bytes of `data` as published.
func TestDataIsDeliveredByteForByte(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"memory", "single", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// nodes[0] publishes; subscribers sit on every node.
			var nodes []*node
			if kind == "memory" {
				nodes = []*node{startMemoryNode(t)}
			} else {
				cfg := backend(t, kind)
				nodes = []*node{startNode(t, cfg, "n1"), startNode(t, cfg, "n2")}
			}
			for _, pub := range rawPublishers {
				t.Run(pub.name, func(t *testing.T) {
					t.Parallel()
					topic := topicFor(t, "data")
					pattern := topicFor(t, "*")
					type sub struct {
						path, sub string
						c         *wstest.Client
					}
					var subs []sub
					for i, n := range nodes {
						where := "same node"
						if i > 0 {
							where = "another node"
						}
						exact := wstest.Dial(t, n.WS)
						exact.Subscribe(topic)
						wild := wstest.Dial(t, n.WS)
						wild.Subscribe(pattern)
						subs = append(subs, sub{where, "", exact}, sub{where + ", wildcard", pattern, wild})
					}
					pub.publish(t, nodes[0], topic, rawValues)
					epoch := ""
					for _, s := range subs {
						epoch = expectRawData(t, s.c, kind+", "+s.path, topic, s.sub, 1, rawValues)
					}
					// Resume from the start: every value comes from history.
					for i, n := range nodes {
						c := wstest.Dial(t, n.WS)
						if f := c.Resume(topic, 0, epoch); !f.Recovered {
							t.Fatalf("resume on node %d answered %s", i+1, f.Raw)
						}
						expectRawData(t, c, fmt.Sprintf("%s, resumed on node %d", kind, i+1), topic, "", 1, rawValues)
					}
				})
			}
		})
	}
}

// TestRepairedDataIsByteForByte: messages a node missed while cut off
// from Redis are repaired from history with their data as published.
func TestRepairedDataIsByteForByte(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	link := redistest.StartLink(t, srv.Addr())
	// The subscribers' node reaches Redis through the link only.
	subNode := startNode(t, redis.Config{URL: link.URL(), Timeout: time.Second}, "n1")
	pubNode := startNode(t, redis.Config{URL: srv.URL()}, "n2")
	for _, pub := range rawPublishers {
		// One after another: the link is the node's.
		t.Run(pub.name, func(t *testing.T) {
			topic := topicFor(t, "gap")
			pattern := topicFor(t, "*")
			exact := wstest.Dial(t, subNode.WS)
			exact.Subscribe(topic)
			wild := wstest.Dial(t, subNode.WS)
			wild.Subscribe(pattern)
			publishRawHTTP(t, pubNode, topic, rawValues[:1])
			expectRawData(t, exact, "live", topic, "", 1, rawValues[:1])
			expectRawData(t, wild, "live, wildcard", topic, pattern, 1, rawValues[:1])

			// Published while the node cannot hear them: they reach it
			// through history only, once the link is back.
			link.Cut()
			pub.publish(t, pubNode, topic, rawValues)
			link.Restore()
			expectRawData(t, exact, "repaired", topic, "", 2, rawValues)
			expectRawData(t, wild, "repaired, wildcard", topic, pattern, 2, rawValues)

			publishRawHTTP(t, pubNode, topic, rawValues[:1])
			next := uint64(2 + len(rawValues))
			expectRawData(t, exact, "live after repair", topic, "", next, rawValues[:1])
			expectRawData(t, wild, "live after repair, wildcard", topic, pattern, next, rawValues[:1])
		})
	}
}
