// Package telemetry holds what every package of the module does the same
// way with OpenTelemetry: the instrumentation scope names, the tracer and
// meter of a scope from the providers a config hands in (nil meaning
// off), the default propagator, the shared histogram buckets, attribute
// sets made once (Attrs), and instrument registration that reports its
// errors (Instruments), observed instruments by families (Observe).
//
// It uses the OpenTelemetry API only, never the SDK or an exporter
// (internal/importrules enforces it): the providers come from the caller,
// in the broker from the tracing package.
package telemetry

import (
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Module is the module's import path, the prefix of every scope name.
const Module = "github.com/tidings-io/tidings"

// Scope returns the instrumentation scope name of the module's package
// pkg, its import path: Scope("store/redis") is
// "github.com/tidings-io/tidings/store/redis".
func Scope(pkg string) string { return Module + "/" + pkg }

// Tracer returns the tracer of scope from tp, or nil when tp is nil or a
// no-op provider: nil means tracing is off, and callers skip every span
// operation, so tracing off costs one nil check.
func Tracer(tp trace.TracerProvider, scope string) trace.Tracer {
	if tp == nil {
		return nil
	}
	if _, ok := tp.(tracenoop.TracerProvider); ok {
		return nil
	}
	return tp.Tracer(scope)
}

// Tracing returns the tracer of scope from tp, nil when tracing is off
// (see Tracer), and prop, or W3C when prop is nil: what a package traces
// with, from the provider and propagator its config names.
func Tracing(tp trace.TracerProvider, prop propagation.TextMapPropagator, scope string) (trace.Tracer, propagation.TextMapPropagator) {
	if prop == nil {
		prop = W3C()
	}
	return Tracer(tp, scope), prop
}

// Meter returns the meter of scope from mp, or a no-op meter when mp is nil.
func Meter(mp metric.MeterProvider, scope string) metric.Meter {
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	return mp.Meter(scope)
}

// W3C is the default propagator, used where a config names none: W3C
// trace context (traceparent, tracestate) and baggage. It is also what
// the tracing package builds from the default OTEL_PROPAGATORS.
func W3C() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// latencyBuckets are the boundaries, in seconds, of the module's latency
// histograms: 100 µs to 10 s in 1, 2.5, 5 steps.
var latencyBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// LatencyBuckets returns the bucket boundaries, in seconds, of a latency
// histogram: 0.0001, 0.00025, 0.0005, 0.001, … 1, 2.5, 5, 10. Each call
// returns a new slice.
func LatencyBuckets() []float64 { return slices.Clone(latencyBuckets[:]) }

// LatencyBucketsUpTo returns the boundaries of LatencyBuckets that are at
// most max seconds, for a histogram of shorter latencies.
func LatencyBucketsUpTo(max float64) []float64 {
	var out []float64
	for _, b := range latencyBuckets {
		if b <= max {
			out = append(out, b)
		}
	}
	return out
}

// Attrs returns the measurement option of the attribute set of kvs, to
// make once and pass to every measurement it applies to.
func Attrs(kvs ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(kvs...))
}

// AttrsEach returns, for each of values in order, the measurement option
// of the one attribute key=value.
func AttrsEach(key string, values ...string) []metric.MeasurementOption {
	out := make([]metric.MeasurementOption, len(values))
	for i, v := range values {
		out[i] = Attrs(attribute.String(key, v))
	}
	return out
}
