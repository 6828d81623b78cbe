package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// collect reads every metric of r by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func TestTracing(t *testing.T) {
	t.Parallel()
	tr, prop := telemetry.Tracing(nil, nil, "s")
	if tr != nil {
		t.Errorf("Tracing(nil) tracer = %v, want nil", tr)
	}
	if f := slices.Sorted(slices.Values(prop.Fields())); !slices.Equal(f, []string{"baggage", "traceparent", "tracestate"}) {
		t.Errorf("default propagator fields %v, want W3C's", f)
	}
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr, prop = telemetry.Tracing(tp, propagation.Baggage{}, "s")
	if tr == nil {
		t.Error("Tracing(SDK provider) tracer = nil")
	}
	if _, ok := prop.(propagation.Baggage); !ok {
		t.Errorf("propagator %T, want the one given", prop)
	}
}

// TestObserve: each kind of a family reports what its read observes,
// with its unit, description and attributes; a series not observed is
// absent.
func TestObserve(t *testing.T) {
	t.Parallel()
	r := sdkmetric.NewManualReader()
	in := telemetry.NewInstruments(telemetry.Meter(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), "s"))
	dirs := telemetry.AttrsEach("direction", "in", "out")
	n := int64(5)
	in.Observe(
		telemetry.Counter("tidings.c", "By", "A counter.", func(o telemetry.Observation) {
			o(n, dirs[0])
			o(2*n, dirs[1])
		}),
		telemetry.UpDownCounter("tidings.u", "{thing}", "An up-down counter.", func(o telemetry.Observation) { o(-n) }),
		telemetry.Gauge("tidings.g", "1", "A gauge.", func(o telemetry.Observation) {
			o(n, telemetry.Attrs(attribute.Bool("on", true)))
		}),
		telemetry.Counter("tidings.none", "1", "Never observed.", func(telemetry.Observation) {}),
	)
	if err := in.Err(); err != nil {
		t.Fatal(err)
	}
	n = 7
	got := collect(t, r)
	c, ok := got["tidings.c"].Data.(metricdata.Sum[int64])
	if !ok || !c.IsMonotonic || got["tidings.c"].Unit != "By" || got["tidings.c"].Description != "A counter." {
		t.Fatalf("tidings.c = %+v, want a monotonic sum in By", got["tidings.c"])
	}
	byDir := map[string]int64{}
	for _, p := range c.DataPoints {
		d, _ := p.Attributes.Value("direction")
		byDir[d.AsString()] = p.Value
	}
	if byDir["in"] != 7 || byDir["out"] != 14 || len(byDir) != 2 {
		t.Errorf("tidings.c by direction = %v, want in 7, out 14", byDir)
	}
	if u, ok := got["tidings.u"].Data.(metricdata.Sum[int64]); !ok || u.IsMonotonic || len(u.DataPoints) != 1 || u.DataPoints[0].Value != -7 {
		t.Errorf("tidings.u = %+v, want a non-monotonic sum of -7", got["tidings.u"].Data)
	}
	g, ok := got["tidings.g"].Data.(metricdata.Gauge[int64])
	if !ok || len(g.DataPoints) != 1 || g.DataPoints[0].Value != 7 {
		t.Fatalf("tidings.g = %+v, want a gauge of 7", got["tidings.g"].Data)
	}
	if on, _ := g.DataPoints[0].Attributes.Value("on"); !on.AsBool() {
		t.Errorf("tidings.g attributes %v, want on=true", g.DataPoints[0].Attributes)
	}
	if _, ok := got["tidings.none"]; ok {
		t.Error("tidings.none reported with no observation")
	}
}

// TestObserveNeverNil: a family the meter fails still registers, its
// failures in Err.
func TestObserveNeverNil(t *testing.T) {
	t.Parallel()
	in := telemetry.NewInstruments(nilMeter{})
	in.Observe(telemetry.UpDownCounter("u", "1", "", func(o telemetry.Observation) { o(1) }))
	if err := in.Err(); !errors.Is(err, errNope) || strings.Count(err.Error(), "nope") != 2 {
		t.Errorf("Err = %v, want the instrument's and the callback's failures", err)
	}
}

func TestSeconds(t *testing.T) {
	t.Parallel()
	r := sdkmetric.NewManualReader()
	in := telemetry.NewInstruments(telemetry.Meter(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), "s"))
	in.Seconds("tidings.a", "All buckets.").Record(t.Context(), 0.5)
	in.Seconds("tidings.b", "Fewer.", metric.WithExplicitBucketBoundaries(telemetry.LatencyBucketsUpTo(0.001)...)).Record(t.Context(), 0.5)
	got := collect(t, r)
	for name, want := range map[string][]float64{"tidings.a": telemetry.LatencyBuckets(), "tidings.b": telemetry.LatencyBucketsUpTo(0.001)} {
		m := got[name]
		h, ok := m.Data.(metricdata.Histogram[float64])
		if !ok || m.Unit != "s" || len(h.DataPoints) != 1 {
			t.Fatalf("%s = %+v, want a histogram in s", name, m)
		}
		if !slices.Equal(h.DataPoints[0].Bounds, want) {
			t.Errorf("%s bounds %v, want %v", name, h.DataPoints[0].Bounds, want)
		}
	}
	if d := got["tidings.a"].Description; d != "All buckets." {
		t.Errorf("description %q", d)
	}
}

func TestAttrsEach(t *testing.T) {
	t.Parallel()
	r := sdkmetric.NewManualReader()
	in := telemetry.NewInstruments(telemetry.Meter(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), "s"))
	c := in.Int64Counter("tidings.c")
	for i, opt := range telemetry.AttrsEach("k", "a", "b") {
		c.Add(t.Context(), int64(i+1), opt)
	}
	got := map[string]int64{}
	for _, p := range collect(t, r)["tidings.c"].Data.(metricdata.Sum[int64]).DataPoints {
		if p.Attributes.Len() != 1 {
			t.Errorf("attributes %v, want one", p.Attributes)
		}
		v, _ := p.Attributes.Value("k")
		got[v.AsString()] = p.Value
	}
	if got["a"] != 1 || got["b"] != 2 || len(got) != 2 {
		t.Errorf("counted %v, want a 1, b 2", got)
	}
}

// TestLogErr: the meter's errors are logged naming the scope, and nothing
// when there were none.
func TestLogErr(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	in := telemetry.NewInstruments(nilMeter{})
	in.LogErr(log, "the.scope")
	if buf.Len() != 0 {
		t.Errorf("logged %q with no error", buf.String())
	}
	in.Int64Counter("c")
	in.LogErr(log, "the.scope")
	if s := buf.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "scope=the.scope") || !strings.Contains(s, "nope") {
		t.Errorf("logged %q", s)
	}
}

// TestHandleErr: the meter's errors go to OpenTelemetry's error handler,
// named by the package. It sets the global handler: not parallel.
func TestHandleErr(t *testing.T) {
	var got []error
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { got = append(got, err) }))
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	in := telemetry.NewInstruments(nilMeter{})
	in.HandleErr("pkg")
	if len(got) != 0 {
		t.Fatalf("handled %v with no error", got)
	}
	in.Int64Counter("c")
	in.HandleErr("pkg")
	if len(got) != 1 || !errors.Is(got[0], errNope) || !strings.HasPrefix(got[0].Error(), "pkg: metrics: ") {
		t.Errorf("handled %v, want one error prefixed pkg: metrics:", got)
	}
}
