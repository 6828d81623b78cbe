package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/ws"
)

// BenchmarkDeliver delivers one 100-byte message to N exact subscribers of
// a topic: encode once, queue the same frame to each. Outboxes are drained
// every 512 messages, as session writers would. allocs/op must not grow
// with N.
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			br, drainAll := benchFanout(b, broker.Config{QueueSize: 1024}, n)
			m := &broker.Message{
				ID: "6f1c2d4e-8a9b-4c3d-9e2f-1a2b3c4d5e6f", Topic: "bench.topic", Epoch: br.Epoch,
				Time: time.Now(), Data: benchData,
			}
			// Each delivery is the topic's next offset, as the store
			// relays them.
			warmUp(func() { m.Offset++; br.Deliver(m) }, drainAll)
			frames := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.Offset++
				br.Deliver(m)
				if i%512 == 511 {
					frames += drainAll()
				}
			}
			b.StopTimer()
			if frames += drainAll(); frames != b.N*n {
				b.Fatalf("%d frames queued, want %d", frames, b.N*n)
			}
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkSubscribeChurn subscribes and unsubscribes one session across
// 1000 exact topics and 100 patterns.
func BenchmarkSubscribeChurn(b *testing.B) {
	st := memory.New(memory.Config{})
	defer st.Close()
	br := broker.New(broker.Config{QueueSize: 1 << 20, QueueBytes: 1 << 30}, st, ws.Encoder{})
	s := br.NewSession()
	defer s.Close()
	topics := make([]string, 1100)
	for i := range topics {
		if i < 1000 {
			topics[i] = fmt.Sprintf("churn.%d.x", i)
		} else {
			topics[i] = fmt.Sprintf("churn.%d.*", i)
		}
	}
	ctx := context.Background()
	var spare [][]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := topics[i%len(topics)]
		if err := s.Subscribe(ctx, "", t, nil); err != nil {
			b.Fatal(err)
		}
		if err := s.Unsubscribe(t); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 1023 {
			spare, _ = s.Outbox().Drain(spare)
		}
	}
}

// benchFanout starts a broker on an in-memory store with n sessions
// subscribed to bench.topic, closed at cleanup, and returns it with a
// function that drains every session's outbox, as their writers would.
func benchFanout(b *testing.B, cfg broker.Config, n int) (*benchBroker, func() int) {
	b.Helper()
	st := memory.New(memory.Config{})
	b.Cleanup(func() { _ = st.Close() })
	br := broker.New(cfg, st, ws.Encoder{})
	sessions := testkit.Subscribers(b, n, br.NewSession, "bench.topic")
	spare := make([][][]byte, n)
	return &benchBroker{br, testkit.EpochOf(b, st, "bench.topic")}, func() int {
		frames := 0
		for i, s := range sessions {
			spare[i], _ = s.Outbox().Drain(spare[i])
			frames += len(spare[i])
		}
		return frames
	}
}

// benchData is the data of the fan-out benchmarks' messages: a JSON
// string of 100 bytes.
var benchData = json.RawMessage(`"` + strings.Repeat("x", 98) + `"`)

// warmUp calls send 1024 times, draining every outbox after each 512 and
// at the end, so that both of each outbox's alternating buffers reach
// their working size, as in a running writer.
func warmUp(send func(), drainAll func() int) {
	for i := 0; i < 1024; i++ {
		send()
		if i%512 == 511 {
			drainAll()
		}
	}
	drainAll()
}

// benchBroker is a broker and the epoch of its topic bench.topic.
type benchBroker struct {
	*broker.Broker
	Epoch string
}
