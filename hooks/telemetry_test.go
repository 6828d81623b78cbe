package hooks_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidings-io/tidings/hooks"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The SDK and the Prometheus exporter are imported by the tests only: the
// package itself uses the OpenTelemetry API.

// tracing returns a tracer provider that records spans in memory.
func tracing(t testing.TB) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// traceparent splits a W3C traceparent header into its trace and parent
// span ids.
func traceparent(t testing.TB, h string) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(h, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("traceparent %q is not a W3C version 00 traceparent", h)
	}
	return parts[1], parts[2]
}

// TestTraceparent: each request carries the caller's trace in
// traceparent; with tracing on, its parent is the call's client span
// "hook <kind>", a child of the caller's span, which records the result.
func TestTraceparent(t *testing.T) {
	t.Parallel()
	tp, exp := tracing(t)
	b := newBackend(t, allow)
	cfg := allHooks(b)
	cfg.TracerProvider = tp
	h := newHooks(t, cfg)

	ctx, parent := tp.Tracer("test").Start(t.Context(), "session")
	if _, err := h.Call(ctx, hooks.Subscribe, hooks.Request{Topic: "news"}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	traceID, spanID := traceparent(t, b.lastRequest().header.Get("Traceparent"))
	if traceID != parent.SpanContext().TraceID().String() {
		t.Errorf("traceparent trace %s, want the caller's %s", traceID, parent.SpanContext().TraceID())
	}
	var span *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "hook subscribe" {
			span = &s
		}
	}
	if span == nil {
		t.Fatalf("no span hook subscribe among %v", exp.GetSpans().Snapshots())
	}
	if span.SpanKind != trace.SpanKindClient || span.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("span kind %v parent %v, want a client span child of the caller's %v", span.SpanKind, span.Parent.SpanID(), parent.SpanContext().SpanID())
	}
	if spanID != span.SpanContext.SpanID().String() {
		t.Errorf("traceparent parent %s, want the hook span %s", spanID, span.SpanContext.SpanID())
	}
	attrs := attribute.NewSet(span.Attributes...)
	for k, want := range map[attribute.Key]string{
		hooks.AttrHook: "subscribe", hooks.AttrResult: "allow", "http.request.method": "POST",
		"url.full": b.url("/subscribe"), "server.address": "127.0.0.1",
	} {
		if v, _ := attrs.Value(k); v.String() != want {
			t.Errorf("span %s = %q, want %q", k, v.String(), want)
		}
	}
	for k, want := range map[attribute.Key]int64{hooks.AttrAttempts: 1, "http.response.status_code": 200} {
		if v, _ := attrs.Value(k); v.AsInt64() != want {
			t.Errorf("span %s = %v, want %d", k, v.String(), want)
		}
	}
	if span.Status.Code == codes.Error {
		t.Errorf("an allowed call's span has status %v", span.Status)
	}
}

// TestTraceparentWithTracingOff: with no tracer provider the request still
// carries the caller's trace, with the caller's span as its parent.
func TestTraceparentWithTracingOff(t *testing.T) {
	t.Parallel()
	tp, _ := tracing(t)
	b := newBackend(t, allow)
	h := newHooks(t, allHooks(b))
	ctx, parent := tp.Tracer("test").Start(t.Context(), "session")
	defer parent.End()
	if _, err := h.Call(ctx, hooks.Connect, hooks.Request{}); err != nil {
		t.Fatal(err)
	}
	traceID, spanID := traceparent(t, b.lastRequest().header.Get("Traceparent"))
	if traceID != parent.SpanContext().TraceID().String() || spanID != parent.SpanContext().SpanID().String() {
		t.Errorf("traceparent %s-%s, want the caller's %s-%s", traceID, spanID,
			parent.SpanContext().TraceID(), parent.SpanContext().SpanID())
	}
	// No trace in the context: no traceparent.
	if _, err := h.Call(t.Context(), hooks.Connect, hooks.Request{}); err != nil {
		t.Fatal(err)
	}
	if v := b.lastRequest().header.Get("Traceparent"); v != "" {
		t.Errorf("traceparent %q with no trace", v)
	}
}

// TestSpanOfAFailureAndARefusal: a failure is an error span with its
// result; a refusal is no error, and carries its code.
func TestSpanOfAFailureAndARefusal(t *testing.T) {
	t.Parallel()
	tp, exp := tracing(t)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/publish" {
			reply(http.StatusOK, `{"allow": false, "code": "forbidden", "message": "no"}`)(w, r)
			return
		}
		reply(http.StatusInternalServerError, "")(w, r)
	})
	cfg := allHooks(b)
	cfg.TracerProvider = tp
	h := newHooks(t, cfg)
	_, _ = h.Call(t.Context(), hooks.Connect, hooks.Request{})
	_, _ = h.Call(t.Context(), hooks.Publish, hooks.Request{})
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for _, s := range spans {
		attrs := attribute.NewSet(s.Attributes...)
		result, _ := attrs.Value(hooks.AttrResult)
		attempts, _ := attrs.Value(hooks.AttrAttempts)
		switch s.Name {
		case "hook connect":
			if s.Status.Code != codes.Error || result.AsString() != "error" || attempts.AsInt64() != 2 {
				t.Errorf("connect span: status %v, result %v, attempts %v; want an error after 2 attempts", s.Status, result.String(), attempts.String())
			}
		case "hook publish":
			code, _ := attrs.Value(hooks.AttrCode)
			if s.Status.Code == codes.Error || result.AsString() != "deny" || code.AsString() != "forbidden" {
				t.Errorf("publish span: status %v, result %v, code %v; want a refusal, no error", s.Status, result.String(), code.String())
			}
		default:
			t.Errorf("span %q", s.Name)
		}
	}
}

// TestMetrics: each call is counted by hook and result, and its duration
// recorded by hook; the in-flight gauge is back to 0 after.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/connect":
			allow(w, r)
		case "/subscribe":
			reply(http.StatusOK, `{"allow": false}`)(w, r)
		case "/publish":
			reply(http.StatusBadGateway, "")(w, r)
		case "/refresh":
			held <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	})
	t.Cleanup(func() { close(release) })
	cfg := allHooks(b)
	cfg.MeterProvider = mp
	cfg.MaxConcurrent = 1
	cfg.Timeout = 500 * time.Millisecond
	h := newHooks(t, cfg)

	ctx := t.Context()
	for range 2 {
		if _, err := h.Call(ctx, hooks.Connect, hooks.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = h.Call(ctx, hooks.Subscribe, hooks.Request{}) // deny
	_, _ = h.Call(ctx, hooks.Publish, hooks.Request{})   // error
	// A refresh holds the one slot until it times out; a connect waiting
	// for it meanwhile (with a deadline of its own that passes first)
	// is overloaded.
	done := make(chan error, 1)
	go func() {
		_, err := h.Call(ctx, hooks.Refresh, hooks.Request{})
		done <- err
	}()
	<-held
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := h.Call(short, hooks.Connect, hooks.Request{})
	cancel()
	wantUnavailable(t, err, hooks.ErrOverload)
	wantUnavailable(t, <-done, hooks.ErrTimeout)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	results := map[string]int64{}
	durations := map[string]uint64{}
	inFlight := int64(-1)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != "github.com/tidings-io/tidings/hooks" {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			switch m.Name {
			case "tidings.hook.results":
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					hook, _ := dp.Attributes.Value("hook")
					res, _ := dp.Attributes.Value("result")
					results[hook.AsString()+"/"+res.AsString()] = dp.Value
				}
			case "tidings.hook.duration":
				if m.Unit != "s" {
					t.Errorf("duration unit %q, want s", m.Unit)
				}
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					hook, _ := dp.Attributes.Value("hook")
					durations[hook.AsString()] = dp.Count
					if !slices.Equal(dp.Bounds[:3], []float64{0.0001, 0.00025, 0.0005}) {
						t.Errorf("duration bounds %v, want the module's latency buckets", dp.Bounds)
					}
				}
			case "tidings.hook.in_flight":
				inFlight = m.Data.(metricdata.Sum[int64]).DataPoints[0].Value
			}
		}
	}
	wantResults := map[string]int64{
		"connect/allow": 2, "subscribe/deny": 1, "publish/error": 1, "refresh/timeout": 1, "connect/overload": 1,
	}
	if !mapsEqual(results, wantResults) {
		t.Errorf("results %v, want %v", results, wantResults)
	}
	wantDurations := map[string]uint64{"connect": 3, "subscribe": 1, "publish": 1, "refresh": 1}
	if !mapsEqual(durations, wantDurations) {
		t.Errorf("durations counted %v, want %v", durations, wantDurations)
	}
	if inFlight != 0 {
		t.Errorf("in flight %d, want 0", inFlight)
	}
}

func mapsEqual[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestPrometheusNames: on /metrics (the tracing package's Prometheus
// exporter) the hooks' metrics are tidings_hook_duration_seconds,
// tidings_hook_results_total and tidings_hook_in_flight.
func TestPrometheusNames(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	b := newBackend(t, allow)
	cfg := allHooks(b)
	cfg.MeterProvider = mp
	h := newHooks(t, cfg)
	if _, err := h.Call(t.Context(), hooks.Connect, hooks.Request{}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "tidings_hook") {
			names = append(names, f.GetName())
		}
	}
	slices.Sort(names)
	if want := []string{"tidings_hook_duration_seconds", "tidings_hook_in_flight", "tidings_hook_results_total"}; !slices.Equal(names, want) {
		t.Errorf("metric families %v, want %v", names, want)
	}
}
