package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/internal/wstest"
	"github.com/tidings-io/tidings/tracing"
	"github.com/tidings-io/tidings/transport/httpapi"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	// sampledParent and unsampledParent are incoming W3C traceparents.
	sampledParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	unsampledParent = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
)

// newTracedEnv is a node whose spans go to an in-memory exporter, with the
// sampler of OTEL_TRACES_SAMPLER (default: parent-based, always on).
func newTracedEnv(t *testing.T) (*testEnv, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := tracing.Setup(context.Background(), func(string) string { return "" }, tracing.Config{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newObservedEnvWith(t, tel, broker.Config{}, httpapi.Config{})
	return e, exp
}

// publishSpan waits until the exporter holds a publish span and returns
// the first.
func publishSpan(t *testing.T, exp *tracetest.InMemoryExporter) tracetest.SpanStub {
	t.Helper()
	var pub tracetest.SpanStub
	testkit.Eventually(t, waitTimeout, func() error {
		spans := exp.GetSpans()
		for _, s := range spans {
			if s.Name == "publish" {
				pub = s
				return nil
			}
		}
		return fmt.Errorf("no publish span among the %d ended", len(spans))
	})
	return pub
}

// spansOf waits until the exporter holds n spans of trace id and returns
// them by name.
func spansOf(t *testing.T, exp *tracetest.InMemoryExporter, id trace.TraceID, n int) map[string]tracetest.SpanStub {
	t.Helper()
	var got tracetest.SpanStubs
	testkit.Eventually(t, waitTimeout, func() error {
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
			t.Errorf("two %s spans in trace %s", s.Name, id)
		}
		out[s.Name] = s
	}
	if len(got) != n {
		t.Errorf("trace %s has %d spans, want %d: %v", id, len(got), n, names(got))
	}
	return out
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attrOf(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[string]any) {
	t.Helper()
	for k, w := range want {
		v, ok := attrOf(s, k)
		if !ok {
			t.Errorf("%s span has no %s", s.Name, k)
			continue
		}
		if got := v.AsInterface(); got != w {
			t.Errorf("%s span %s = %v (%T), want %v (%T)", s.Name, k, got, got, w, w)
		}
	}
}

// TestTraceOfHTTPPublish: one HTTP publish with an incoming traceparent
// yields publish, store.append and deliver spans, all in that trace; the
// deliver span is one for the node however many subscribers there are.
func TestTraceOfHTTPPublish(t *testing.T) {
	t.Parallel()
	e, exp := newTracedEnv(t)
	c := e.dial(t)
	c.Subscribe("tr.a", "tr.*")
	other := e.dial(t)
	other.Subscribe("tr.a")

	res := wantResult(t, e.post(t, "/v1/publish", `{"topic":"tr.a","data":1}`,
		"traceparent", sampledParent, "tracestate", "vendor=1", "baggage", "tenant=acme", "User-Agent", "trace-test"))
	c.Expect("message")
	c.Expect("message")
	other.Expect("message")

	id, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spans := spansOf(t, exp, id, 3)
	pub, app, del := spans["publish"], spans["store.append"], spans["deliver"]
	if pub.Parent.SpanID().String() != "00f067aa0ba902b7" || !pub.Parent.IsRemote() {
		t.Errorf("publish span's parent %v, want the incoming span 00f067aa0ba902b7", pub.Parent)
	}
	if pub.SpanKind != trace.SpanKindServer || del.SpanKind != trace.SpanKindConsumer {
		t.Errorf("kinds: publish %v, deliver %v; want server and consumer", pub.SpanKind, del.SpanKind)
	}
	if got := pub.SpanContext.TraceState().Get("vendor"); got != "1" {
		t.Errorf("publish span's tracestate vendor = %q, want 1 (continued)", got)
	}
	wantAttrs(t, pub, map[string]any{
		"http.request.method":        "POST",
		"http.route":                 "/v1/publish",
		"url.path":                   "/v1/publish",
		"http.response.status_code":  int64(200),
		"user_agent.original":        "trace-test",
		"messaging.system":           "tidings",
		"messaging.destination.name": "tr.a",
		"messaging.message.id":       res.ID,
		"tidings.offset":             int64(1),
	})
	if app.Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("store.append's parent %v, want the publish span", app.Parent.SpanID())
	}
	if del.Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("deliver's parent %v, want the publish span", del.Parent.SpanID())
	}
	if len(del.Links) != 1 || del.Links[0].SpanContext.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("deliver links %v, want one link to the publish span", del.Links)
	}
	// The message carries the publish span's context and the baggage on.
	msgs, _, _, err := e.store.Since(context.Background(), "tr.a", broker.Position{Offset: 0, Epoch: testkit.EpochOf(t, e.store, "tr.a")})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("history: %v %v", msgs, err)
	}
	if tr := msgs[0].Trace; tr["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-"+pub.SpanContext.SpanID().String()+"-01" ||
		tr["tracestate"] != "vendor=1" || tr["baggage"] != "tenant=acme" {
		t.Errorf("message carries %v, want the publish span's context, tracestate and baggage", tr)
	}
	wantAttrs(t, del, map[string]any{
		"messaging.destination.name": "tr.a",
		"messaging.operation.type":   "process",
		"messaging.message.id":       res.ID,
		"tidings.offset":             int64(1),
		"tidings.subscribers":        int64(3), // two exact, one wildcard: one span
	})
}

// TestTraceSampledOut: a publish whose incoming traceparent was not
// sampled yields no spans, and is delivered as usual.
func TestTraceSampledOut(t *testing.T) {
	t.Parallel()
	e, exp := newTracedEnv(t)
	c := e.dial(t)
	c.Subscribe("so.a")
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"so.a","data":1}`, "traceparent", unsampledParent))
	c.Expect("message")
	// A sampled publish after it proves the exporter is working; only its
	// spans are there.
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"so.a","data":2}`, "traceparent", sampledParent))
	c.Expect("message")
	id, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spansOf(t, exp, id, 3)
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != id {
			t.Errorf("span %s in trace %s: the sampled-out publish was recorded", s.Name, s.SpanContext.TraceID())
		}
	}
	// The sampled-out message carries no trace context, so no other node
	// records anything for it; the sampled one carries its trace.
	msgs, _, _, err := e.store.Since(context.Background(), "so.a", broker.Position{Offset: 0, Epoch: testkit.EpochOf(t, e.store, "so.a")})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("history: %v %v", msgs, err)
	}
	if msgs[0].Trace != nil {
		t.Errorf("the sampled-out message carries %v", msgs[0].Trace)
	}
	if tp := msgs[1].Trace["traceparent"]; !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(tp, "-01") {
		t.Errorf("the sampled message carries traceparent %q, want its trace, sampled", tp)
	}
}

// TestTraceNewRoot: a publish with no traceparent starts a trace.
func TestTraceNewRoot(t *testing.T) {
	t.Parallel()
	e, exp := newTracedEnv(t)
	c := e.dial(t)
	c.Subscribe("nr.a")
	wantResults(t, e.post(t, "/v1/publish/batch", `{"messages":[{"topic":"nr.a","data":1},{"topic":"nr.a","data":2}]}`))
	c.Expect("message")
	c.Expect("message")
	pub := publishSpan(t, exp)
	if pub.Parent.IsValid() {
		t.Errorf("publish span has parent %v, want a root", pub.Parent)
	}
	// One publish, one store.append for the batch, one deliver per message.
	spans := exp.GetSpans()
	testkit.Eventually(t, waitTimeout, func() error {
		if spans = exp.GetSpans(); len(spans) != 4 {
			return fmt.Errorf("%d spans ended, want 4", len(spans))
		}
		return nil
	})
	wantAttrs(t, pub, map[string]any{"messaging.batch.message_count": int64(2), "http.route": "/v1/publish/batch"})
	for _, s := range spans {
		if s.SpanContext.TraceID() != pub.SpanContext.TraceID() {
			t.Errorf("%s in another trace", s.Name)
		}
	}
}

// TestTraceOfWebSocketPublish: a WebSocket publish gets the same spans,
// in a new trace linked to the trace of the session's upgrade request.
func TestTraceOfWebSocketPublish(t *testing.T) {
	t.Parallel()
	e, exp := newTracedEnv(t)
	sub := e.dial(t)
	sub.Subscribe("wsp.a")
	// A client that offers no subprotocol, with a traceparent on its
	// upgrade request.
	d := wstest.Dialer{Header: http.Header{"Traceparent": {sampledParent}}, NoSubprotocol: true}
	pc := d.Dial(t, e.wsURL())
	pc.Send(map[string]any{"op": "publish", "topic": "wsp.a", "data": 1, "ref": "p1"})
	pc.Expect("published")
	sub.Expect("message")
	pub := publishSpan(t, exp)
	spans := spansOf(t, exp, pub.SpanContext.TraceID(), 3)
	if pub.Parent.IsValid() || pub.SpanContext.TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("WebSocket publish span parent %v trace %s, want a new root", pub.Parent, pub.SpanContext.TraceID())
	}
	if len(pub.Links) != 1 || pub.Links[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("WebSocket publish links %v, want the upgrade request's trace", pub.Links)
	}
	wantAttrs(t, pub, map[string]any{"messaging.destination.name": "wsp.a", "tidings.offset": int64(1)})
	if d := spans["deliver"]; d.Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("deliver's parent %v, want the WebSocket publish span", d.Parent)
	}
}

// TestTracingOff: with no OTEL_TRACES_EXPORTER, messages carry no trace
// context at all.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	e, tel := newObservedEnv(t, nil, broker.Config{}, httpapi.Config{})
	if tel.TracerProvider != nil {
		t.Fatal("tracing is on by default")
	}
	wantResult(t, e.post(t, "/v1/publish", `{"topic":"off.a","data":1}`, "traceparent", sampledParent))
	msgs, _, _, err := e.store.Since(context.Background(), "off.a", broker.Position{Offset: 0, Epoch: testkit.EpochOf(t, e.store, "off.a")})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("history: %v %v", msgs, err)
	}
	if msgs[0].Trace != nil {
		t.Errorf("message carries %v with tracing off", msgs[0].Trace)
	}
}
