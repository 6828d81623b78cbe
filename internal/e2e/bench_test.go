package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/ws"
)

// benchNodes returns a publishing broker and the subscribing brokers: the
// same in-memory node, the same Redis-backed node, or three nodes over a
// single Redis or a three-master cluster (publishing on the first,
// subscribing on the other two).
func benchNodes(b *testing.B, setup string) (pub *broker.Broker, subs []*broker.Broker) {
	b.Helper()
	if setup == "memory" {
		st := memory.New(memory.Config{HistorySize: 1000})
		b.Cleanup(func() { _ = st.Close() })
		br := broker.New(broker.Config{QueueSize: 1 << 20, QueueBytes: 1 << 30}, st, ws.Encoder{})
		return br, []*broker.Broker{br}
	}
	var cfg redis.Config
	switch setup {
	case "redis-1node", "redis-3nodes":
		cfg = redis.Config{URL: redistest.Start(b).URL()}
	case "cluster-3nodes":
		cfg = redis.Config{ClusterAddrs: redistest.StartCluster(b).Addrs()}
	}
	newBroker := func() *broker.Broker {
		return newRedisBroker(b, cfg, broker.Config{QueueSize: 1 << 20, QueueBytes: 1 << 30})
	}
	pub = newBroker()
	if setup == "redis-1node" {
		return pub, []*broker.Broker{pub}
	}
	return pub, []*broker.Broker{newBroker(), newBroker()}
}

var benchSetups = []string{"memory", "redis-1node", "redis-3nodes", "cluster-3nodes"}

// subscribers opens one session per subscribing node, subscribed to
// topics, with their outboxes drained.
func subscribers(b *testing.B, nodes []*broker.Broker, topics ...string) []*broker.Session {
	b.Helper()
	var out []*broker.Session
	for _, n := range nodes {
		s := n.NewSession()
		b.Cleanup(s.Close)
		for _, t := range topics {
			if err := s.Subscribe(context.Background(), "", t, nil); err != nil {
				b.Fatal(err)
			}
		}
		s.Outbox().Drain(nil)
		out = append(out, s)
	}
	return out
}

// readyChans holds the channel of each session awaitFrames waited on.
var readyChans sync.Map // *broker.Session -> chan struct{}

// ready returns a channel signalled when a push finds s's outbox empty
// and on overflow, through its Notify, made on first use for s (and
// signalled then when the outbox has work already).
func ready(s *broker.Session) <-chan struct{} {
	if ch, ok := readyChans.Load(s); ok {
		return ch.(chan struct{})
	}
	ch := make(chan struct{}, 1)
	readyChans.Store(s, ch)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.Outbox().Notify(signal)
	if s.Outbox().Pending() {
		signal()
	}
	return ch
}

// awaitFrames waits until n frames in all were queued to s.
func awaitFrames(b *testing.B, s *broker.Session, n int, spare [][]byte) [][]byte {
	spare, err := drainFrames(s, n, spare)
	if err != nil {
		b.Fatal(err)
	}
	return spare
}

// drainFrames takes frames off s's outbox until n in all were queued to
// it; an error when 10 s pass without one.
func drainFrames(s *broker.Session, n int, spare [][]byte) ([][]byte, error) {
	for got := 0; got < n; {
		select {
		case <-ready(s):
		case <-time.After(10 * time.Second):
			return spare, fmt.Errorf("delivered %d of %d", got, n)
		}
		spare, _ = s.Outbox().Drain(spare)
		got += len(spare)
	}
	return spare, nil
}

// BenchmarkPublishToDeliverLatency publishes one message at a time and
// waits until it is queued to a subscriber (on the other node where there
// are two); it reports the median and 99th percentile.
func BenchmarkPublishToDeliverLatency(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup, func(b *testing.B) {
			pub, nodes := benchNodes(b, setup)
			measureLatency(b, pub, subscribers(b, nodes, "bench.latency"), "bench.latency")
		})
	}
}

// measureLatency publishes one message at a time on pub and waits until
// every session has it queued; it reports the median and 99th percentile.
func measureLatency(b *testing.B, pub *broker.Broker, sessions []*broker.Session, topic string) {
	ctx := context.Background()
	var spare [][]byte
	data := json.RawMessage(`{"p":1.2345}`)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := pub.Publish(ctx, []broker.Publication{{Topic: topic, Data: data}}); err != nil {
			b.Fatal(err)
		}
		for _, s := range sessions {
			spare = awaitFrames(b, s, 1, spare)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
}

// BenchmarkPublishToDeliverThroughput publishes from parallel goroutines
// and waits until every message reached the subscriber.
func BenchmarkPublishToDeliverThroughput(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup, func(b *testing.B) {
			pub, nodes := benchNodes(b, setup)
			const topics = 8
			names := make([]string, topics)
			for k := range names {
				names[k] = fmt.Sprintf("bench.tp.%d", k)
			}
			sessions := subscribers(b, nodes, names...)
			ctx := context.Background()
			var next atomic.Int64
			data := json.RawMessage(`{"p":1.2345}`)
			b.SetParallelism(8)
			b.ResetTimer()
			// Each subscriber drains its outbox as a writer would, while
			// the publishers run: b.N may exceed what a queue holds.
			drained := make(chan error, len(sessions))
			for _, s := range sessions {
				go func() {
					_, err := drainFrames(s, b.N, nil)
					drained <- err
				}()
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := next.Add(1) % topics
					if _, err := pub.Publish(ctx, []broker.Publication{{Topic: names[k], Data: data}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			for range sessions {
				if err := <-drained; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// newRedisBroker starts a broker on a Redis store of cfg, closed at
// cleanup, once the store answers (it fails b if that takes more than
// 10 s: the store has no event for it, so it is polled).
func newRedisBroker(b *testing.B, cfg redis.Config, bcfg broker.Config) *broker.Broker {
	b.Helper()
	st, err := redis.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	testkit.Eventually(b, 10*time.Second, st.Healthy)
	return broker.New(bcfg, st, ws.Encoder{})
}
