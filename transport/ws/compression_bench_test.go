package ws_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// priceTick is one price update of a feed, 592 bytes of JSON: a symbol's quote,
// its order book's top levels and the day's figures.
func priceTick(seq int) json.RawMessage {
	px := 1.08 + float64(seq%997)/100000
	return json.RawMessage(fmt.Sprintf(`{"symbol":"EURUSD","venue":"LMAX","seq":%d,"ts":%d,`+
		`"bid":%.5f,"ask":%.5f,"mid":%.6f,"spread":0.00008,"volume":%d,`+
		`"open":1.08102,"high":1.08912,"low":1.07988,"change":%.5f,"changePct":%.4f,`+
		`"bids":[{"px":%.5f,"qty":1500000},{"px":%.5f,"qty":2500000},{"px":%.5f,"qty":5000000},{"px":%.5f,"qty":7500000}],`+
		`"asks":[{"px":%.5f,"qty":1000000},{"px":%.5f,"qty":3000000},{"px":%.5f,"qty":4000000},{"px":%.5f,"qty":6500000}],`+
		`"status":"open","session":"london","source":"aggregated","name":"Euro / US Dollar","updated":"2025-01-02T15:04:05.%03dZ"}`,
		seq, 1735830245123+seq, px, px+0.00008, px+0.00004, 125000000+seq*1000, px-1.08102, (px-1.08102)/1.08102*100,
		px, px-0.00002, px-0.00004, px-0.00007, px+0.00008, px+0.0001, px+0.00013, px+0.00016, seq%1000))
}

// timedEncoder sums the time its encoder spends encoding messages (the
// benchmark delivers from one goroutine).
type timedEncoder struct {
	broker.Encoder
	spent time.Duration
}

func (e *timedEncoder) Message(m *broker.Message, sub string) []byte {
	start := time.Now()
	f := e.Encoder.Message(m, sub)
	e.spent += time.Since(start)
	return f
}

// BenchmarkDeliverCompressed delivers a price feed (~600-byte JSON
// objects, each message different) to N exact subscribers of one topic,
// with compression off (every session plain) and on (every session
// compressing), as the broker does for a live topic: encode once per
// encoding, queue the same frame to each subscriber. The outboxes are
// drained every 512 messages as session writers would, and what they
// hold is what the writers put on the wire. It reports the frame bytes
// per delivery (wire-B/delivery), the CPU per delivery (ns/delivery) and
// the messages deflated per message published (deflates/msg, 1 with
// compression on whatever N) and the time spent encoding each message
// (encode-ns/msg): the compression's CPU is per message, not per
// subscriber.
func BenchmarkDeliverCompressed(b *testing.B) {
	ticks := make([]json.RawMessage, 64)
	for i := range ticks {
		ticks[i] = priceTick(i)
	}
	for _, n := range []int{1000, 10000} {
		for _, compressed := range []bool{false, true} {
			b.Run(fmt.Sprintf("subs=%d/compression=%v", n, compressed), func(b *testing.B) {
				st := memory.New(memory.Config{})
				b.Cleanup(func() { _ = st.Close() })
				plain := &timedEncoder{Encoder: wsserver.Encoder{}}
				br := broker.New(broker.Config{QueueSize: 1024, QueueBytes: 1 << 24, OutboundBytes: 1 << 36}, st, plain)
				enc := wsserver.NewDeflateEncoder(0)
				deflate := &timedEncoder{Encoder: enc}
				encoding := br.AddEncoder(deflate)
				open := br.NewSession
				if compressed {
					open = func() *broker.Session { return br.NewSessionEncoded(encoding) }
				}
				sessions := testkit.Subscribers(b, n, open, "prices.eurusd")
				spare := make([][][]byte, n)
				var frames, bytes int
				drain := func() {
					for i, s := range sessions {
						spare[i], _ = s.Outbox().Drain(spare[i])
						frames += len(spare[i])
						for _, f := range spare[i] {
							bytes += len(f)
						}
					}
				}
				m := &broker.Message{ID: "6f1c2d4e-8a9b-4c3d-9e2f-1a2b3c4d5e6f", Topic: "prices.eurusd",
					Epoch: testkit.EpochOf(b, st, "prices.eurusd"), Time: time.Now()}
				send := func(i int) {
					m.Offset++
					m.Data = ticks[i%len(ticks)]
					br.Deliver(m)
					if i%512 == 511 {
						drain()
					}
				}
				// Warm up both of each outbox's buffers.
				for i := range 1024 {
					send(i)
				}
				drain()
				frames, bytes = 0, 0
				deflated := enc.Stats().Frames
				plain.spent, deflate.spent = 0, 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					send(i)
				}
				drain()
				b.StopTimer()
				if frames != b.N*n {
					b.Fatalf("%d frames queued, want %d", frames, b.N*n)
				}
				deliveries := float64(b.N) * float64(n)
				b.ReportMetric(float64(bytes)/deliveries, "wire-B/delivery")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
				b.ReportMetric(float64(enc.Stats().Frames-deflated)/float64(b.N), "deflates/msg")
				b.ReportMetric(float64((plain.spent+deflate.spent).Nanoseconds())/float64(b.N), "encode-ns/msg")
			})
		}
	}
}
