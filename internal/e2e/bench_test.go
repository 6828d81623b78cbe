package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/ws"
)

// benchNodes returns a publishing broker and a subscribing broker: the
// same in-memory node, the same Redis-backed node, or two nodes over a
// single Redis or a three-master cluster.
func benchNodes(b *testing.B, setup string) (pub, sub *broker.Broker) {
	b.Helper()
	if setup == "memory" {
		st := memory.New(memory.Config{HistorySize: 1000})
		b.Cleanup(func() { _ = st.Close() })
		br := broker.New(broker.Config{QueueSize: 1 << 20, QueueBytes: 1 << 30}, st, ws.Encoder{})
		return br, br
	}
	var cfg redis.Config
	switch setup {
	case "redis-1node", "redis-2nodes":
		cfg = redis.Config{URL: redistest.Start(b).URL()}
	case "cluster-2nodes":
		cfg = redis.Config{ClusterAddrs: redistest.StartCluster(b).Addrs()}
	}
	newBroker := func() *broker.Broker {
		st, err := redis.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		deadline := time.Now().Add(10 * time.Second)
		for st.Healthy() != nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return broker.New(broker.Config{QueueSize: 1 << 20, QueueBytes: 1 << 30}, st, ws.Encoder{})
	}
	pub = newBroker()
	if setup == "redis-1node" {
		return pub, pub
	}
	return pub, newBroker()
}

var benchSetups = []string{"memory", "redis-1node", "redis-2nodes", "cluster-2nodes"}

// BenchmarkPublishToDeliverLatency publishes one message at a time and
// waits until it is queued to a subscriber (on the other node where there
// are two); it reports the median and 99th percentile.
func BenchmarkPublishToDeliverLatency(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup, func(b *testing.B) {
			pub, subNode := benchNodes(b, setup)
			s := subNode.NewSession()
			defer s.Close()
			ctx := context.Background()
			if err := s.Subscribe(ctx, "", "bench.latency", nil); err != nil {
				b.Fatal(err)
			}
			out := s.Outbox()
			var spare [][]byte
			spare, _ = out.Drain(spare)
			data := json.RawMessage(`{"p":1.2345}`)
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := pub.Publish(ctx, []broker.Publication{{Topic: "bench.latency", Data: data}}); err != nil {
					b.Fatal(err)
				}
				for got := 0; got == 0; {
					<-out.Ready()
					spare, _ = out.Drain(spare)
					got = len(spare)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkPublishToDeliverThroughput publishes from parallel goroutines
// and waits until every message reached the subscriber.
func BenchmarkPublishToDeliverThroughput(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup, func(b *testing.B) {
			pub, subNode := benchNodes(b, setup)
			s := subNode.NewSession()
			defer s.Close()
			ctx := context.Background()
			const topics = 8
			for k := 0; k < topics; k++ {
				if err := s.Subscribe(ctx, "", fmt.Sprintf("bench.tp.%d", k), nil); err != nil {
					b.Fatal(err)
				}
			}
			out := s.Outbox()
			spare, _ := out.Drain(nil)
			var next atomic.Int64
			data := json.RawMessage(`{"p":1.2345}`)
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := next.Add(1) % topics
					if _, err := pub.Publish(ctx, []broker.Publication{{Topic: fmt.Sprintf("bench.tp.%d", k), Data: data}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			for got := 0; got < b.N; {
				select {
				case <-out.Ready():
				case <-time.After(10 * time.Second):
					b.Fatalf("delivered %d of %d", got, b.N)
				}
				spare, _ = out.Drain(spare)
				got += len(spare)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
