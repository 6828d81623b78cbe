package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/store/redis"
)

const wait = 10 * time.Second

// backend starts a single Redis or a three-master cluster.
func backend(t testing.TB, kind string) redis.Config {
	t.Helper()
	if kind == "cluster" {
		return redis.Config{ClusterAddrs: redistest.StartCluster(t).Addrs()}
	}
	return redis.Config{URL: redistest.Start(t).URL()}
}

// expectMessages reads frames until n messages on topic arrived and checks
// they carry offsets from..from+n-1, in order, in one epoch.
func expectMessages(t *testing.T, c *wstest.Client, topic string, from uint64, n int) string {
	t.Helper()
	epoch := ""
	next := from
	for got := 0; got < n; {
		f := c.Next()
		if f.Type != "message" || f.Topic != topic {
			t.Fatalf("got %s while waiting for message %d on %s", f.Raw, next, topic)
		}
		if f.Offset != next {
			t.Fatalf("got offset %d on %s, want %d (gap or duplicate): %s", f.Offset, topic, next, f.Raw)
		}
		if epoch == "" {
			epoch = f.Epoch
		} else if f.Epoch != epoch {
			t.Fatalf("epoch changed from %s to %s mid-stream", epoch, f.Epoch)
		}
		next++
		got++
	}
	return epoch
}

func TestNodesActAsOne(t *testing.T) {
	for _, kind := range []string{"single", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			cfg := backend(t, kind)
			nodes := []*node{startNode(t, cfg, "n1"), startNode(t, cfg, "n2"), startNode(t, cfg, "n3")}

			t.Run("CrossNodeDeliveryWithWildcards", func(t *testing.T) {
				topic := topicFor(t, "eur.usd")
				exact := wstest.Dial(t, nodes[1].WS)
				exact.Subscribe(topic)
				wild := wstest.Dial(t, nodes[2].WS)
				pattern := topicFor(t, "*.usd")
				wild.Subscribe(pattern)
				other := topicFor(t, "eur.gbp")
				nodes[0].mustPublish(t, other, 0)
				r := nodes[0].mustPublish(t, topic, map[string]any{"bid": 1.08})
				f := exact.Next()
				if f.Type != "message" || f.ID != r.ID || f.Offset != 1 || f.Has("sub") {
					t.Fatalf("exact subscriber on another node got %s", f.Raw)
				}
				f = wild.Next()
				if f.Type != "message" || f.ID != r.ID || f.Sub != pattern {
					t.Fatalf("wildcard subscriber on another node got %s (want %s, not %s)", f.Raw, topic, other)
				}
			})

			t.Run("ConcurrentPublishersShareOneSequence", func(t *testing.T) {
				topic := topicFor(t, "seq")
				const perNode = 100
				var subs []*wstest.Client
				for _, n := range nodes {
					c := wstest.Dial(t, n.WS)
					c.Subscribe(topic)
					subs = append(subs, c)
				}
				wild := wstest.Dial(t, nodes[2].WS)
				wild.Subscribe(topicFor(t, ">"))
				subs = append(subs, wild)

				var mu sync.Mutex
				offsets := map[uint64]bool{}
				epochs := map[string]bool{}
				var wg sync.WaitGroup
				for _, n := range nodes[:2] {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < perNode; i++ {
							r := n.publish(t, topic, i)
							if r.Status != http.StatusOK {
								t.Errorf("publish: %d %s", r.Status, r.Body)
								return
							}
							mu.Lock()
							offsets[r.Offset] = true
							epochs[r.Epoch] = true
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				if len(offsets) != 2*perNode || !offsets[1] || !offsets[2*perNode] || len(epochs) != 1 {
					t.Fatalf("publishers got %d distinct offsets in %d epochs, want 1..%d in one", len(offsets), len(epochs), 2*perNode)
				}
				for _, c := range subs {
					expectMessages(t, c, topic, 1, 2*perNode)
				}
			})

			t.Run("ResumeOnAnotherNode", func(t *testing.T) {
				topic := topicFor(t, "resume")
				first := wstest.Dial(t, nodes[0].WS)
				first.Subscribe(topic)
				for i := 0; i < 5; i++ {
					nodes[1].mustPublish(t, topic, i)
				}
				epoch := expectMessages(t, first, topic, 1, 5)
				_ = first.Conn.Close()
				for i := 5; i < 10; i++ {
					nodes[2].mustPublish(t, topic, i)
				}
				second := wstest.Dial(t, nodes[1].WS)
				f := second.Resume(topic, 5, epoch)
				if !f.Recovered || f.Epoch != epoch {
					t.Fatalf("resume on another node answered %s", f.Raw)
				}
				expectMessages(t, second, topic, 6, 5)
				nodes[0].mustPublish(t, topic, 10)
				expectMessages(t, second, topic, 11, 1)
			})

			// Last: it stops node 3.
			t.Run("ShutdownOfOneNodeLosesNothingElsewhere", func(t *testing.T) {
				topic := topicFor(t, "drain")
				leaving := wstest.Dial(t, nodes[2].WS)
				leaving.Subscribe(topic)
				staying := []*wstest.Client{wstest.Dial(t, nodes[0].WS), wstest.Dial(t, nodes[1].WS)}
				for _, c := range staying {
					c.Subscribe(topic)
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						nodes[i%2].mustPublish(t, topic, i)
					}
				}()
				nodes[2].stop()
				wg.Wait()
				for {
					f := leaving.Next()
					if f.Close != nil {
						if f.Close.Code != 1001 || f.Close.Reason != "server shutting down" {
							t.Fatalf("leaving node closed with %+v", f.Close)
						}
						break
					}
				}
				for _, c := range staying {
					expectMessages(t, c, topic, 1, 50)
				}
			})
		})
	}
}

func TestThousandSessionsOverThreeNodes(t *testing.T) {
	cfg := backend(t, "single")
	nodes := []*node{startNode(t, cfg, "n1"), startNode(t, cfg, "n2"), startNode(t, cfg, "n3")}
	const sessions, topics = 1000, 9
	clients := make([]*wstest.Client, sessions)
	for i := range clients {
		c := wstest.Dial(t, nodes[i%3].WS)
		c.Subscribe(fmt.Sprintf("e2e.many.%d", i%topics))
		clients[i] = c
	}
	for k := 0; k < topics; k++ {
		nodes[k%3].mustPublish(t, fmt.Sprintf("e2e.many.%d", k), k)
	}
	for i, c := range clients {
		expectMessages(t, c, fmt.Sprintf("e2e.many.%d", i%topics), 1, 1)
	}
}
