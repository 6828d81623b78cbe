package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/sse"
	"github.com/tidings-io/tidings/transport/ws"
)

// transportNode is one node serving WebSocket and Server-Sent Events
// sessions over loopback HTTP.
type transportNode struct {
	b   *broker.Broker
	srv *httptest.Server
}

func startTransportNode(b *testing.B) *transportNode {
	b.Helper()
	st := memory.New(memory.Config{HistorySize: 100})
	br := broker.New(broker.Config{QueueSize: 1 << 16, QueueBytes: 1 << 26, OutboundBytes: 1 << 32}, st, ws.Encoder{})
	wsrv := ws.New(ws.Config{Policy: admit.Policy{MaxSessions: -1, IPConnRate: -1, IPMaxConns: -1}}, br)
	ssrv := sse.New(sse.Config{MaxSessions: -1}, br)
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", wsrv)
	mux.Handle("/v1/sse", ssrv)
	n := &transportNode{b: br, srv: httptest.NewServer(mux)}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wsrv.Shutdown(ctx)
		_ = ssrv.Shutdown(ctx)
		n.srv.Close()
		_ = st.Close()
	})
	return n
}

// counter counts the messages one raw client read, and signals when it
// has read want of them.
type counter struct {
	got  atomic.Int64
	want atomic.Int64
	done chan struct{}
	once sync.Once
}

func (c *counter) add() {
	if w := c.want.Load(); c.got.Add(1) == w && w > 0 {
		c.once.Do(func() { close(c.done) })
	}
}

// openWS opens a raw WebSocket session subscribed to topic and counts the
// message frames it reads, reading headers and skipping payloads but the
// first bytes.
func openWS(b *testing.B, url, topic string, c *counter) io.Closer {
	b.Helper()
	d := gws.Dialer{Protocols: []string{protocol.Subprotocol}}
	nc, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http")+"/v1/ws")
	if err != nil {
		b.Fatal(err)
	}
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	cmd, _ := json.Marshal(map[string]string{"op": "subscribe", "topic": topic, "ref": "s"})
	if err := gws.WriteFrame(nc, gws.MaskFrame(gws.NewTextFrame(cmd))); err != nil {
		b.Fatal(err)
	}
	subscribed := make(chan struct{})
	go func() {
		rd := bufio.NewReaderSize(r, 64<<10)
		head := make([]byte, 16)
		signalled := false
		for {
			h, err := gws.ReadHeader(rd)
			if err != nil {
				return
			}
			n := int(h.Length)
			k := min(n, len(head))
			if _, err := io.ReadFull(rd, head[:k]); err != nil {
				return
			}
			if _, err := rd.Discard(n - k); err != nil {
				return
			}
			switch {
			case bytes.HasPrefix(head[:k], []byte(`{"type":"message`)):
				c.add()
			case !signalled && bytes.HasPrefix(head[:k], []byte(`{"type":"subscri`)):
				signalled = true
				close(subscribed)
			}
		}
	}()
	<-subscribed
	return nc
}

// openSSE opens a Server-Sent Events stream on topic and counts the
// message events it reads.
func openSSE(b *testing.B, url, topic string, c *counter) io.Closer {
	b.Helper()
	resp, err := http.Get(url + "/v1/sse?topic=" + topic)
	if err != nil {
		b.Fatal(err)
	}
	subscribed := make(chan struct{})
	go func() {
		rd := bufio.NewReaderSize(resp.Body, 64<<10)
		signalled := false
		for {
			line, err := rd.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				return
			}
			switch {
			case bytes.Equal(line, []byte("event: message\n")):
				c.add()
			case !signalled && bytes.Equal(line, []byte("event: subscribed\n")):
				signalled = true
				close(subscribed)
			}
		}
	}()
	<-subscribed
	return resp.Body
}

// BenchmarkTransportFanout publishes b.N messages (a 300-byte JSON price
// tick) to one topic with subs raw clients of one transport on loopback,
// and waits until every client has read every message: deliveries per
// second through the whole path, socket writes and reads included
// (clients and node share the machine).
func BenchmarkTransportFanout(b *testing.B) {
	data := json.RawMessage(`{"symbol":"EURUSD","bid":1.08421,"ask":1.08424,"bid_size":1250000,"ask_size":900000,"venue":"LMAX","seq":118273645,"ts":"2026-12-07T16:00:00.123456Z","open":1.08102,"high":1.08533,"low":1.08011,"change":0.00319,"change_pct":0.295,"volume":8812331,"vwap":1.08342}`)
	for _, transport := range []string{"websocket", "sse"} {
		for _, subs := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/subs=%d", transport, subs), func(b *testing.B) {
				n := startTransportNode(b)
				counters := make([]*counter, subs)
				for i := range counters {
					counters[i] = &counter{done: make(chan struct{})}
					var c io.Closer
					if transport == "websocket" {
						c = openWS(b, n.srv.URL, "bench.fanout", counters[i])
					} else {
						c = openSSE(b, n.srv.URL, "bench.fanout", counters[i])
					}
					b.Cleanup(func() { _ = c.Close() })
				}
				for _, c := range counters {
					c.want.Store(int64(b.N))
				}
				ctx := context.Background()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := n.b.Publish(ctx, []broker.Publication{{Topic: "bench.fanout", Data: data}}); err != nil {
						b.Fatal(err)
					}
				}
				for i, c := range counters {
					select {
					case <-c.done:
					case <-time.After(60 * time.Second):
						b.Fatalf("client %d read %d of %d messages", i, c.got.Load(), b.N)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(subs)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
