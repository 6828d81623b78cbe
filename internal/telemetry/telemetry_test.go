package telemetry_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// The SDK is imported by this test only: the package itself uses the API,
// and the SDK is what validates instrument names.

func TestScope(t *testing.T) {
	t.Parallel()
	if got, want := telemetry.Scope("store/redis"), "github.com/tidings-io/tidings/store/redis"; got != want {
		t.Errorf("Scope = %q, want %q", got, want)
	}
}

func TestTracer(t *testing.T) {
	t.Parallel()
	if tr := telemetry.Tracer(nil, "s"); tr != nil {
		t.Errorf("Tracer(nil) = %v, want nil (tracing off)", tr)
	}
	if tr := telemetry.Tracer(tracenoop.NewTracerProvider(), "s"); tr != nil {
		t.Errorf("Tracer(no-op provider) = %v, want nil (tracing off)", tr)
	}
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := telemetry.Tracer(tp, "s")
	if tr == nil {
		t.Fatal("Tracer(SDK provider) = nil")
	}
	_, span := tr.Start(t.Context(), "x")
	defer span.End()
	if !span.SpanContext().IsValid() {
		t.Error("the tracer's span has no valid span context")
	}
}

func TestMeter(t *testing.T) {
	t.Parallel()
	m := telemetry.Meter(nil, "s")
	if m == nil {
		t.Fatal("Meter(nil) = nil, want a no-op meter")
	}
	if _, err := m.Int64Counter("c"); err != nil {
		t.Errorf("no-op meter: %v", err)
	}
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	c, err := telemetry.Meter(mp, "the.scope").Int64Counter("c")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 1)
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) != 1 || rm.ScopeMetrics[0].Scope.Name != "the.scope" {
		t.Errorf("collected %+v, want one scope named the.scope", rm.ScopeMetrics)
	}
}

// TestW3C: the default propagator reads and writes W3C trace context and
// baggage under their W3C names, and writes nothing for a context with
// no trace.
func TestW3C(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	p := telemetry.W3C()
	ctx := p.Extract(t.Context(), propagation.MapCarrier{"traceparent": tp, "tracestate": "vendor=x", "baggage": "tenant=acme"})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.TraceState().Get("vendor") != "x" {
		t.Errorf("extracted %v", sc)
	}
	if m := baggage.FromContext(ctx).Member("tenant"); m.Value() != "acme" {
		t.Errorf("baggage tenant = %q", m.Value())
	}
	out := propagation.MapCarrier{}
	p.Inject(ctx, out)
	if out["traceparent"] != tp || out["tracestate"] != "vendor=x" || out["baggage"] != "tenant=acme" {
		t.Errorf("injected %v", out)
	}
	empty := propagation.MapCarrier{}
	p.Inject(context.Background(), empty)
	if len(empty) != 0 {
		t.Errorf("injected %v from a context with no trace", empty)
	}
	if f := slices.Sorted(slices.Values(p.Fields())); !slices.Equal(f, []string{"baggage", "traceparent", "tracestate"}) {
		t.Errorf("fields %v", f)
	}
}

func TestLatencyBuckets(t *testing.T) {
	t.Parallel()
	want := []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	got := telemetry.LatencyBuckets()
	if !slices.Equal(got, want) {
		t.Fatalf("LatencyBuckets = %v, want %v", got, want)
	}
	got[0] = 42
	if again := telemetry.LatencyBuckets(); !slices.Equal(again, want) {
		t.Errorf("a caller's change reached the next call: %v", again)
	}
	if got := telemetry.LatencyBucketsUpTo(2.5); !slices.Equal(got, want[:14]) {
		t.Errorf("LatencyBucketsUpTo(2.5) = %v, want %v", got, want[:14])
	}
	if got := telemetry.LatencyBucketsUpTo(10); !slices.Equal(got, want) {
		t.Errorf("LatencyBucketsUpTo(10) = %v, want %v", got, want)
	}
}

// TestInstrumentsReportErrors: a name the SDK rejects (one that does not
// start with a letter) and a callback over an instrument of another
// implementation surface in Err, each naming what failed; the valid
// instruments are created and record.
func TestInstrumentsReportErrors(t *testing.T) {
	t.Parallel()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	in := telemetry.NewInstruments(telemetry.Meter(mp, "s"))

	good := in.Int64Counter("tidings.good", metric.WithUnit("{thing}"))
	if err := in.Err(); err != nil {
		t.Fatalf("Err after a valid instrument = %v, want nil", err)
	}
	bad := in.Float64Histogram("1bad")
	if bad == nil {
		t.Fatal("a rejected instrument came back nil")
	}
	err := in.Err()
	if !errors.Is(err, sdkmetric.ErrInstrumentName) || !strings.Contains(err.Error(), "1bad") {
		t.Fatalf("Err = %v, want ErrInstrumentName naming 1bad", err)
	}

	in.Observe(telemetry.Gauge("tidings.gauge", "1", "A gauge.", func(o telemetry.Observation) { o(7) }),
		telemetry.Counter("2bad", "1", "A counter with a bad name.", func(o telemetry.Observation) { o(1) }))
	foreign, _ := metricnoop.Meter{}.Int64ObservableCounter("foreign")
	in.RegisterCallback(func(context.Context, metric.Observer) error { return nil }, foreign)
	err = in.Err()
	for _, want := range []string{"1bad", "2bad", "registering a callback"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err = %v, want it to report %s", err, want)
		}
	}

	good.Add(t.Context(), 3)
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			found[m.Name] = true
		}
	}
	if !found["tidings.good"] {
		t.Errorf("collected %v, want tidings.good", found)
	}
}

// nilMeter is a meter that fails every instrument and returns none.
type nilMeter struct{ metricnoop.Meter }

var errNope = errors.New("nope")

func (nilMeter) Int64Counter(string, ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return nil, errNope
}

func (nilMeter) Int64ObservableUpDownCounter(string, ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	return nil, errNope
}

func (nilMeter) RegisterCallback(metric.Callback, ...metric.Observable) (metric.Registration, error) {
	return nil, errNope
}

// TestInstrumentsNeverNil: an instrument the meter failed to return is a
// no-op one, so recording does not panic; each error is kept.
func TestInstrumentsNeverNil(t *testing.T) {
	t.Parallel()
	in := telemetry.NewInstruments(nilMeter{})
	c := in.Int64Counter("c")
	c.Add(t.Context(), 1)
	// The up-down counter and the callback fail: Observe goes on with a
	// no-op instrument.
	in.Observe(telemetry.UpDownCounter("u", "1", "An up-down counter.", func(o telemetry.Observation) { o(1) }))
	err := in.Err()
	if !errors.Is(err, errNope) || strings.Count(err.Error(), "nope") != 3 {
		t.Errorf("Err = %v, want the three failures", err)
	}
	if in.Meter() != (nilMeter{}) {
		t.Errorf("Meter = %v", in.Meter())
	}
}
