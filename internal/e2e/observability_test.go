package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/tracing"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedTelemetry sets a node's telemetry up as cmd/broker does, with its
// spans going to an in-memory exporter.
func tracedTelemetry(t *testing.T, vars map[string]string) (*tracing.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := tracing.Setup(context.Background(), func(k string) string { return vars[k] }, tracing.Config{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, exp
}

// publishTraced posts one message with a traceparent header.
func (n *node) publishTraced(t *testing.T, topic, traceparent string) {
	t.Helper()
	testkit.PublishTraced(t, n.HTTP, topic, traceparent)
}

// spansIn waits until exp holds n spans of trace id and returns them by
// name; more than n, or two of one name, fail the test.
func spansIn(t *testing.T, exp *tracetest.InMemoryExporter, id trace.TraceID, n int) map[string]tracetest.SpanStub {
	t.Helper()
	var got tracetest.SpanStubs
	testkit.Eventually(t, wait, func() error {
		got = got[:0]
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() == id {
				got = append(got, s)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d spans of trace %s ended, want %d", len(got), id, n)
		}
		return nil
	})
	out := map[string]tracetest.SpanStub{}
	for _, s := range got {
		if _, dup := out[s.Name]; dup {
			t.Errorf("two %s spans on one node in trace %s", s.Name, id)
		}
		out[s.Name] = s
	}
	if len(got) != n {
		t.Errorf("%d spans in trace %s, want %d", len(got), id, n)
	}
	return out
}

// TestTraceAcrossNodes: a message published over HTTP on node A with a
// traceparent is delivered on A and on B through Redis; each node records
// one deliver span, in the trace that came in on A, a child of A's
// publish span and linked to it.
func TestTraceAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redis.Config{URL: srv.URL()}
	telA, expA := tracedTelemetry(t, nil)
	telB, expB := tracedTelemetry(t, nil)
	a := startObservedNode(t, cfg, "a", telA)
	b := startObservedNode(t, cfg, "b", telB)
	topic := topicFor(t, "x")
	onA, onB := wstest.Dial(t, a.WS), wstest.Dial(t, b.WS)
	onA.Subscribe(topic)
	onB.Subscribe(topic)
	onB2 := wstest.Dial(t, b.WS)
	onB2.Subscribe(topic)

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	a.publishTraced(t, topic, "00-"+traceID+"-b7ad6b7169203331-01")
	for _, c := range []*wstest.Client{onA, onB, onB2} {
		expectMessages(t, c, topic, 1, 1)
	}

	id, _ := trace.TraceIDFromHex(traceID)
	onNodeA := spansIn(t, expA, id, 3)
	pub, app := onNodeA["publish"], onNodeA["store.append"]
	if pub.Parent.SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("publish parent %s, want the incoming span", pub.Parent.SpanID())
	}
	if v, ok := attr(app, "db.system.name"); !ok || v != "redis" {
		t.Errorf("store.append db.system.name = %v, want redis", v)
	}
	// B's only span is its deliver span: one for its two subscribers.
	onNodeB := spansIn(t, expB, id, 1)
	for node, d := range map[string]tracetest.SpanStub{"a": onNodeA["deliver"], "b": onNodeB["deliver"]} {
		if d.Parent.SpanID() != pub.SpanContext.SpanID() {
			t.Errorf("node %s: deliver parent %s, want A's publish span %s", node, d.Parent.SpanID(), pub.SpanContext.SpanID())
		}
		if len(d.Links) != 1 || d.Links[0].SpanContext.SpanID() != pub.SpanContext.SpanID() {
			t.Errorf("node %s: deliver links %v, want A's publish span", node, d.Links)
		}
		if v, _ := attr(d, "messaging.destination.name"); v != topic {
			t.Errorf("node %s: deliver destination %v", node, v)
		}
		if v, _ := attr(d, "tidings.offset"); v != int64(1) {
			t.Errorf("node %s: deliver offset %v", node, v)
		}
	}
	if v, _ := attr(onNodeB["deliver"], "tidings.subscribers"); v != int64(2) {
		t.Errorf("B's deliver span counts %v subscribers, want 2", v)
	}
	if v, _ := attr(onNodeA["deliver"], "tidings.subscribers"); v != int64(1) {
		t.Errorf("A's deliver span counts %v subscribers, want 1", v)
	}
}

// TestSampledOutAcrossNodes: a publish whose parent was not sampled is
// traced on no node, whatever their samplers would decide alone.
func TestSampledOutAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redis.Config{URL: srv.URL()}
	telA, expA := tracedTelemetry(t, nil)
	// B would sample anything it is handed, even a child of an unsampled
	// parent: the decision made on A must hold on B all the same.
	telB, expB := tracedTelemetry(t, map[string]string{"OTEL_TRACES_SAMPLER": "always_on"})
	a := startObservedNode(t, cfg, "a", telA)
	b := startObservedNode(t, cfg, "b", telB)
	topic := topicFor(t, "x")
	onB := wstest.Dial(t, b.WS)
	onB.Subscribe(topic)

	a.publishTraced(t, topic, "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
	expectMessages(t, onB, topic, 1, 1)
	// A sampled publish after it: its spans arrive, and are the only ones.
	a.publishTraced(t, topic, "00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	expectMessages(t, onB, topic, 2, 1)
	id, _ := trace.TraceIDFromHex("2af7651916cd43dd8448eb211c80319c")
	spansIn(t, expA, id, 2)
	spansIn(t, expB, id, 1)
	for node, exp := range map[string]*tracetest.InMemoryExporter{"a": expA, "b": expB} {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() != id {
				t.Errorf("node %s recorded %s in trace %s, which was sampled out", node, s.Name, s.SpanContext.TraceID())
			}
		}
	}
}

// TestRedisMetrics: the Redis store's round trips, reconnects and gap
// repairs move on /metrics as Redis is used, restarted, and as a node
// loses its pub/sub connection while messages are published.
func TestRedisMetrics(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redis.Config{URL: srv.URL(), Timeout: time.Second}
	telA, _ := tracedTelemetry(t, nil)
	telB, _ := tracedTelemetry(t, nil)
	a := startObservedNode(t, cfg, "a", telA)
	b := startObservedNode(t, cfg, "b", telB)
	topic := topicFor(t, "x")
	onB := wstest.Dial(t, b.WS)
	onB.Subscribe(topic)
	a.mustPublish(t, topic, 1)
	expectMessages(t, onB, topic, 1, 1)
	if n := scrapeNode(t, a).get("tidings_redis_round_trip_seconds", "op", "publish"); n != 1 {
		t.Errorf("publish round trips on A = %v, want 1", n)
	}
	if n := scrapeNode(t, b).get("tidings_redis_round_trip_seconds", "op", "since"); n < 1 {
		t.Errorf("since round trips on B = %v, want at least 1 (the subscribe)", n)
	}

	// B's pub/sub connection is killed while A publishes: B catches up
	// from history, in order, and counts a gap repair. Redis may let B
	// resubscribe before A's publish, leaving no gap: try a few times.
	next := uint64(2)
	for try := 0; scrapeNode(t, b).get("tidings_gap_repairs_total", "outcome", "recovered") == 0; try++ {
		if try == 20 {
			t.Fatal("no gap repair after 20 pub/sub connection kills")
		}
		if err := srv.Client().Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		a.mustPublish(t, topic, next)
		expectMessages(t, onB, topic, next, 1)
		next++
		testkit.Eventually(t, wait, func() error {
			if got := scrapeNode(t, b).get("tidings_redis_reconnects_total", "conn", "pubsub"); got < 1 {
				return fmt.Errorf("tidings_redis_reconnects_total{conn=pubsub} = %v, want at least 1", got)
			}
			return nil
		})
	}

	// Redis restarts: every node counts a reconnect of its commands.
	srv.Save()
	srv.Kill()
	for _, n := range []*node{a, b} {
		testkit.Eventually(t, wait, func() error { return n.wantReadyz(t, http.StatusServiceUnavailable, "") })
	}
	srv.Restart()
	for _, n := range []*node{a, b} {
		testkit.Eventually(t, wait, func() error {
			if got := scrapeNode(t, n).get("tidings_redis_reconnects_total", "conn", "commands"); got != 1 {
				return fmt.Errorf("tidings_redis_reconnects_total{conn=commands} = %v, want 1", got)
			}
			return nil
		})
	}
}

func attr(s tracetest.SpanStub, key string) (any, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.AsInterface(), true
		}
	}
	return nil, false
}

// nodeMetrics is one scrape of a node's /metrics.
type nodeMetrics map[string]*dto.MetricFamily

func scrapeNode(t *testing.T, n *node) nodeMetrics {
	t.Helper()
	resp, err := http.Get(n.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// get returns the counter value or histogram count of the sample of name
// whose label k is v (0 when there is none).
func (m nodeMetrics) get(name, k, v string) float64 {
	for _, s := range m[name].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				if h := s.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}
