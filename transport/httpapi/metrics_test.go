package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/tracing"
	"github.com/tidings-io/tidings/transport/httpapi"
	wstransport "github.com/tidings-io/tidings/transport/ws"
)

// newObservedEnv is newEnv with OpenTelemetry set up from vars, as
// cmd/broker does, the providers handed to every package and /metrics
// served by the Prometheus handler.
func newObservedEnv(t testing.TB, vars map[string]string, bcfg broker.Config, cfg httpapi.Config) (*testEnv, *tracing.Telemetry) {
	t.Helper()
	tel, err := tracing.Setup(context.Background(), func(k string) string { return vars[k] }, tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return newObservedEnvWith(t, tel, bcfg, cfg)
}

// newObservedEnvWith builds the node on tel; it shuts tel down at cleanup.
func newObservedEnvWith(t testing.TB, tel *tracing.Telemetry, bcfg broker.Config, cfg httpapi.Config) (*testEnv, *tracing.Telemetry) {
	t.Helper()
	store := memory.New(memory.Config{MeterProvider: tel.MeterProvider})
	bcfg.TracerProvider, bcfg.MeterProvider, bcfg.Propagator = tel.TracerProvider, tel.MeterProvider, tel.Propagator
	b := broker.New(bcfg, store, wstransport.Encoder{})
	wsrv := wstransport.New(wstransport.Config{NodeID: "node-m", CloseTimeout: 2 * time.Second, WriteTimeout: time.Second,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator}, b)
	cfg.Metrics, cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator = tel.MetricsHandler, tel.TracerProvider, tel.MeterProvider, tel.Propagator
	e := serveEnv(t, httpapi.New(cfg, b, wsrv), b, store, wsrv, func(ctx context.Context) { _ = tel.Shutdown(ctx) })
	return e, tel
}

// metrics is one scrape of /metrics, parsed by expfmt.
type metrics map[string]*dto.MetricFamily

// scrape reads /metrics and parses it with the Prometheus text parser.
func scrape(t testing.TB, e *testEnv) metrics {
	t.Helper()
	r := e.do(t, "GET", "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(ct, "version=0.0.4") {
		t.Errorf("/metrics Content-Type %q, want the Prometheus text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(r.body)))
	if err != nil {
		t.Fatalf("/metrics is not in the Prometheus text format: %v\n%s", err, r.body)
	}
	return fams
}

// value returns the sample of family name whose labels include labels
// ("k=v" pairs): a gauge's or counter's value, a histogram's count; and
// whether there is one.
func (m metrics) value(name string, labels ...string) (float64, bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
	for _, s := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return s.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return s.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(s.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// get returns a value that must be there (0 when it is absent and want
// is 0: a counter not yet touched is not exported).
func (m metrics) get(name string, labels ...string) float64 {
	v, _ := m.value(name, labels...)
	return v
}

// want checks metric values: key is "name" or "name{k=v,k=v}".
func (m metrics) want(t testing.TB, want map[string]float64) {
	t.Helper()
	for _, err := range m.mismatches(want) {
		t.Error(err)
	}
}

// mismatches returns an error for each metric value of want (keyed as for
// want) that m does not have, in the order of the keys.
func (m metrics) mismatches(want map[string]float64) []error {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		name, labels := parseKey(key)
		got, ok := m.value(name, labels...)
		if !ok && want[key] != 0 {
			errs = append(errs, fmt.Errorf("%s: no such sample", key))
			continue
		}
		if got != want[key] {
			errs = append(errs, fmt.Errorf("%s = %v, want %v", key, got, want[key]))
		}
	}
	return errs
}

func parseKey(key string) (string, []string) {
	name, rest, ok := strings.Cut(key, "{")
	if !ok {
		return name, nil
	}
	return name, strings.Split(strings.TrimSuffix(rest, "}"), ",")
}

// TestMetrics drives one node through a scenario and checks that each
// metric moves as it should, reading /metrics as Prometheus would.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e, _ := newObservedEnv(t, nil, broker.Config{QueueSize: 8}, httpapi.Config{})
	m := scrape(t, e)
	m.want(t, map[string]float64{
		"tidings_sessions":                                0,
		"tidings_subscriptions{kind=exact}":               0,
		"tidings_subscriptions{kind=wildcard}":            0,
		"tidings_topics":                                  0,
		"tidings_messages_published_total{api=http}":      0,
		"tidings_messages_published_total{api=ws}":        0,
		"tidings_messages_delivered_total":                0,
		"tidings_slow_consumers_total":                    0,
		"tidings_resumes_total{recovered=true}":           0,
		"tidings_resumes_total{recovered=false}":          0,
		"tidings_ws_io_bytes_total{direction=in}":         0,
		"tidings_ws_io_bytes_total{direction=out}":        0,
		"tidings_http_requests_total{route=/metrics}":     0,
		"tidings_delivery_latency_seconds":                0,
		"tidings_sessions_opened_total":                   0,
		"tidings_refused_total{reason=http_unauthorized}": 0,
	})
	if _, ok := m.value("go_goroutines"); !ok {
		t.Error("no Go runtime metrics (go_goroutines)")
	}

	c := e.dial(t)
	c.Subscribe("m.a", "m.*")
	scrape(t, e).want(t, map[string]float64{
		"tidings_sessions":                     1,
		"tidings_sessions_opened_total":        1,
		"tidings_subscriptions{kind=exact}":    1,
		"tidings_subscriptions{kind=wildcard}": 1,
		"tidings_topics":                       1,
		// The first scrape is counted once it has been answered.
		"tidings_http_requests_total{route=/metrics,status=200}": 1,
	})

	// Three messages on m.a reach two subscriptions each; one on m.b
	// reaches the wildcard only; one on n.a reaches nobody; one published
	// over the WebSocket on m.c reaches the wildcard.
	wantResults(t, e.post(t, "/v1/publish/batch", `{"messages":[{"topic":"m.a","data":1},{"topic":"m.a","data":2},{"topic":"m.a","data":3}]}`))
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"m.b","data":4}`))
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"n.a","data":5}`))
	// A rejected publish counts no message, but a request with status 400.
	wantError(t, e.post(t, "/v1/publish", `{"topic":"m.a"}`), http.StatusBadRequest, "bad_request")
	c.Send(map[string]any{"op": "publish", "topic": "m.c", "data": 6, "ref": "p"})
	// 7 messages from HTTP, then the WebSocket publish's answer and message.
	for range 9 {
		if f := c.Next(); f.Type != "message" && f.Type != "published" {
			t.Fatalf("got %s", f.Raw)
		}
	}
	testkit.Eventually(t, waitTimeout, func() error {
		if n := scrape(t, e).get("tidings_delivery_latency_seconds"); n <= 0 {
			return fmt.Errorf("tidings_delivery_latency_seconds has %v samples, want some", n)
		}
		return nil
	})
	m = scrape(t, e)
	m.want(t, map[string]float64{
		"tidings_messages_published_total{api=http}":                      5,
		"tidings_messages_published_total{api=ws}":                        1,
		"tidings_messages_delivered_total":                                8,
		"tidings_http_requests_total{route=/v1/publish/batch,status=200}": 1,
		"tidings_http_requests_total{route=/v1/publish,status=200}":       2,
		"tidings_http_requests_total{route=/v1/publish,status=400}":       1,
		"tidings_http_request_duration_seconds{route=/v1/publish}":        3,
		"tidings_http_request_duration_seconds{route=/v1/publish/batch}":  1,
	})
	for _, key := range []string{"tidings_ws_io_bytes_total{direction=in}", "tidings_ws_io_bytes_total{direction=out}", "tidings_outbound_queue_depth"} {
		name, labels := parseKey(key)
		if v, _ := m.value(name, labels...); v <= 0 {
			t.Errorf("%s = %v, want it to have moved", key, v)
		}
	}
	// Every delivered message was written within the histogram's range.
	if lat := m["tidings_delivery_latency_seconds"].GetMetric()[0].GetHistogram(); lat.GetSampleSum() <= 0 || lat.GetSampleSum() > 10*float64(lat.GetSampleCount()) {
		t.Errorf("delivery latency sum %v over %d batches", lat.GetSampleSum(), lat.GetSampleCount())
	}

	// Resumes: one recovered, one not.
	c.Send(map[string]any{"op": "subscribe", "topic": "r.a", "since": map[string]any{"offset": 0, "epoch": testkit.EpochOf(t, e.store, "r.a")}})
	c.Send(map[string]any{"op": "subscribe", "topic": "n.a", "since": map[string]any{"offset": 0, "epoch": "stale"}})
	testkit.Eventually(t, waitTimeout, func() error {
		return errors.Join(scrape(t, e).mismatches(map[string]float64{
			"tidings_resumes_total{recovered=true}":  1,
			"tidings_resumes_total{recovered=false}": 1,
		})...)
	})

	// Sessions that end in various ways, each counted by code and reason.
	c.CloseNormally()
	closeWith(t, e, 4001, "bye")               // an application code
	closeWith(t, e, ws.StatusNoStatusRcvd, "") // a close frame with no code: 1005
	_ = e.dial(t).Conn.Close()                 // dropped: 1006
	bin := e.dial(t)                           // a binary frame: the server closes 1003
	_ = bin.Conn.WriteFrame(ws.NewBinaryFrame([]byte{1}))
	if ce := bin.WaitClose(); ce.Code != ws.StatusUnsupportedData {
		t.Fatalf("close %d, want %d", ce.Code, ws.StatusUnsupportedData)
	}

	// A slow consumer: it subscribes and reads nothing while messages of
	// 32 KiB arrive, until its socket and then its queue of 8 are full.
	slow := e.dial(t)
	slow.Subscribe("slow.t")
	data := `"` + strings.Repeat("x", 32<<10) + `"`
	for i := 0; e.b.Stats().SlowConsumers == 0; i++ {
		if i == 5000 {
			t.Fatal("no slow consumer after 5000 messages")
		}
		wantResult(t, e.post(t, "/v1/publish", `{"topic":"slow.t","data":`+data+`}`))
	}

	testkit.Eventually(t, waitTimeout, func() error {
		return errors.Join(scrape(t, e).mismatches(map[string]float64{
			"tidings_sessions":                         0,
			"tidings_sessions_closed_total{code=1008}": 1,
			"tidings_sessions_closed_total{code=1006}": 1,
			"tidings_sessions_closed_total{code=1003}": 1,
		})...)
	})
	m = scrape(t, e)
	m.want(t, map[string]float64{
		"tidings_sessions":                                                 0,
		"tidings_sessions_opened_total":                                    6,
		"tidings_sessions_closed_total{code=1000,reason=client}":           1,
		"tidings_sessions_closed_total{code=4xxx,reason=client}":           1,
		"tidings_sessions_closed_total{code=1005,reason=client}":           1,
		"tidings_sessions_closed_total{code=1006,reason=dropped}":          1,
		"tidings_sessions_closed_total{code=1003,reason=unsupported_data}": 1,
		"tidings_sessions_closed_total{code=1008,reason=slow_consumer}":    1,
		"tidings_slow_consumers_total":                                     1,
		"tidings_close_sent_total{code=1000}":                              2, // echoes of 1000 and of the 1005 close
		"tidings_close_sent_total{code=1003}":                              1,
		"tidings_close_received_total{code=1000}":                          1,
		"tidings_close_received_total{code=1005}":                          1,
		"tidings_close_received_total{code=1006}":                          1,
		"tidings_subscriptions{kind=exact}":                                0,
		"tidings_subscriptions{kind=wildcard}":                             0,
		"tidings_topics":                                                   0,
	})
}

// closeWith opens a session and closes it with a close frame carrying
// code and reason (code 1005: no code), then waits for the echo.
func closeWith(t *testing.T, e *testEnv, code ws.StatusCode, reason string) {
	t.Helper()
	c := e.dial(t)
	c.SendClose(code, reason)
	c.WaitClose()
}

// TestMetricsOff: with OTEL_METRICS_EXPORTER=none, /metrics answers 404.
func TestMetricsOff(t *testing.T) {
	t.Parallel()
	e, _ := newObservedEnv(t, map[string]string{"OTEL_METRICS_EXPORTER": "none"}, broker.Config{}, httpapi.Config{})
	wantError(t, e.do(t, "GET", "/metrics", nil), http.StatusNotFound, "not_found")
}

// TestMetricsNames: every family the README lists is there, with HELP
// text, and counters end in _total.
func TestMetricsNames(t *testing.T) {
	t.Parallel()
	e, _ := newObservedEnv(t, nil, broker.Config{}, httpapi.Config{})
	// Touch the instruments that are exported only once used.
	c := e.dial(t)
	c.Subscribe("n.a")
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"n.a","data":1}`))
	c.Expect("message")
	c.CloseNormally()
	testkit.Eventually(t, waitTimeout, e.sessionsEnded)
	m := scrape(t, e)
	for _, family := range []string{
		"tidings_sessions", "tidings_sessions_opened_total", "tidings_sessions_closed_total",
		"tidings_subscriptions", "tidings_topics",
		"tidings_messages_published_total", "tidings_messages_delivered_total",
		"tidings_delivery_latency_seconds", "tidings_outbound_queue_depth",
		"tidings_slow_consumers_total", "tidings_ws_io_bytes_total",
		"tidings_close_sent_total", "tidings_close_received_total",
		"tidings_http_requests_total", "tidings_http_request_duration_seconds",
		"tidings_resumes_total", "tidings_resets_total", "tidings_refused_total",
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
	} {
		f := m[family]
		if f == nil {
			t.Errorf("/metrics has no %s family", family)
			continue
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", family)
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(family, "_total") {
			t.Errorf("counter %s does not end in _total", family)
		}
	}
	for name, f := range m {
		if strings.HasPrefix(name, "tidings_") {
			for _, s := range f.GetMetric() {
				for _, l := range s.GetLabel() {
					if strings.HasPrefix(l.GetName(), "otel_scope") {
						t.Errorf("%s carries %s: scope labels are off", name, l.GetName())
					}
				}
			}
		}
	}
}

// TestDashboardAndReadmeNameExportedMetrics: every metric the Grafana
// dashboard queries and the README lists is exported (the Redis store's
// by nodes on Redis: internal/e2e checks those; the connection guard's by
// cmd/broker, whose tests check those; the backend hooks' by nodes with
// hooks: package hooks checks those through the Prometheus exporter).
func TestDashboardAndReadmeNameExportedMetrics(t *testing.T) {
	t.Parallel()
	e, _ := newObservedEnv(t, nil, broker.Config{}, httpapi.Config{})
	c := e.dial(t)
	c.Subscribe("d.a")
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"d.a","data":1}`))
	c.Expect("message")
	c.CloseNormally()
	testkit.Eventually(t, waitTimeout, e.sessionsEnded)
	m := scrape(t, e)
	elsewhere := map[string]bool{"tidings_redis_round_trip_seconds": true, "tidings_redis_reconnects_total": true, "tidings_gap_repairs_total": true,
		"tidings_connections": true, "tidings_connections_refused_total": true,
		"tidings_hook_duration_seconds": true, "tidings_hook_results_total": true, "tidings_hook_in_flight": true}
	name := regexp.MustCompile(`\b(?:tidings|go|process)_[a-z_]+[a-z]\b`)
	for _, file := range []string{"../../deploy/grafana/tidings-dashboard.json", "../../README.md"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, n := range name.FindAllString(string(raw), -1) {
			n = strings.TrimSuffix(n, "_bucket")
			if seen[n] || elsewhere[n] || strings.HasSuffix(n, "_") {
				continue
			}
			seen[n] = true
			if m[n] == nil {
				t.Errorf("%s names %s, which /metrics does not export", file, n)
			}
		}
		if len(seen) < 10 {
			t.Errorf("%s: found only %d metric names", file, len(seen))
		}
	}
}
