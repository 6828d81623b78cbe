package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/client"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
)

// publishPathNode is one node on the memory store serving the HTTP API
// and WebSocket sessions, over HTTP/1.1 or, with tls, HTTP/2 over TLS.
func publishPathNode(b *testing.B, tls bool) *httptest.Server {
	b.Helper()
	st := memory.New(memory.Config{HistorySize: 100})
	br := broker.New(broker.Config{}, st, ws.Encoder{})
	wsrv := ws.New(ws.Config{Policy: admit.Policy{MaxSessions: -1, IPConnRate: -1, IPMaxConns: -1}, OpLimits: session.OpLimits{OpRate: -1}}, br)
	api := httpapi.New(httpapi.Config{PublishRate: -1}, br, wsrv)
	srv := httptest.NewUnstartedServer(api)
	if tls {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		api.BeginShutdown()
		_ = wsrv.Shutdown(ctx)
		srv.Close()
		_ = st.Close()
	})
	return srv
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPublishPaths compares the ways a backend can publish: 32
// publishers of 100-byte messages each, to a node on loopback, as HTTP/1.1
// requests of one message (keep-alive), HTTP/1.1 batches of 50, HTTP/2
// requests of one message over TLS, WebSocket publish commands (each
// awaiting its answer), and the Go client's Publish, which coalesces
// concurrent calls. It reports messages per second and the process's CPU
// per message, publisher and node together (both run here).
func BenchmarkPublishPaths(b *testing.B) {
	const publishers = 32
	data := `"` + string(bytes.Repeat([]byte("x"), 98)) + `"`
	type path struct {
		name  string
		tls   bool
		batch int
		// start returns one publisher's function, which publishes batch
		// messages on topic per call.
		start func(b *testing.B, srv *httptest.Server, topic string) func() error
	}
	httpPost := func(hc *http.Client, url string, body []byte) error {
		resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	single := func(b *testing.B, srv *httptest.Server, topic string) func() error {
		hc := srv.Client()
		if t, ok := hc.Transport.(*http.Transport); ok {
			t.MaxIdleConnsPerHost = publishers
		}
		body := []byte(`{"topic":"` + topic + `","data":` + data + `}`)
		return func() error { return httpPost(hc, srv.URL+"/v1/publish", body) }
	}
	paths := []path{
		{"http1-single", false, 1, single},
		{"http1-batch-50", false, 50, func(b *testing.B, srv *httptest.Server, topic string) func() error {
			hc := srv.Client()
			hc.Transport.(*http.Transport).MaxIdleConnsPerHost = publishers
			var body bytes.Buffer
			body.WriteString(`{"messages":[`)
			for i := range 50 {
				if i > 0 {
					body.WriteByte(',')
				}
				body.WriteString(`{"topic":"` + topic + `","data":` + data + `}`)
			}
			body.WriteString(`]}`)
			return func() error { return httpPost(hc, srv.URL+"/v1/publish/batch", body.Bytes()) }
		}},
		{"http2-single", true, 1, single},
		{"websocket", false, 1, func(b *testing.B, srv *httptest.Server, topic string) func() error {
			c := wstest.Dial(b, "ws"+srv.URL[len("http"):]+"/v1/ws")
			ref := 0
			return func() error {
				ref++
				if err := c.Conn.Send(map[string]any{"op": "publish", "topic": topic, "data": rawJSON(data), "ref": fmt.Sprint(ref)}); err != nil {
					return err
				}
				f, err := c.Conn.Expect("published", time.Now().Add(10*time.Second))
				if err != nil {
					return fmt.Errorf("%v (%s)", err, f.Raw)
				}
				return nil
			}
		}},
		{"go-client", false, 1, func(b *testing.B, srv *httptest.Server, topic string) func() error {
			c := clientOf(b, srv)
			return func() error {
				_, err := c.Publish(context.Background(), topic, []byte(data))
				return err
			}
		}},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			srv := publishPathNode(b, p.tls)
			var next atomic.Int64
			b.SetParallelism((publishers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				publish := p.start(b, srv, fmt.Sprintf("path.%d", next.Add(1)))
				for pb.Next() {
					if err := publish(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			msgs := float64(b.N * p.batch)
			b.ReportMetric(msgs/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/msgs, "cpu-µs/msg")
		})
	}
}

// rawJSON is JSON sent as it is.
type rawJSON string

// MarshalJSON returns r.
func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// clients holds the one Go client of each node of the benchmark, shared
// by its publishers as a backend's goroutines would share it.
var clients sync.Map // *httptest.Server → *client.Client

func clientOf(b *testing.B, srv *httptest.Server) *client.Client {
	if c, ok := clients.Load(srv); ok {
		return c.(*client.Client)
	}
	c, err := client.New(client.Config{URL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	actual, _ := clients.LoadOrStore(srv, c)
	return actual.(*client.Client)
}
