package broker_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tidings-io/tidings/broker"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkPublishDeliverTracing publishes one 100-byte message at a time
// on the in-memory store and delivers it to N exact subscribers, with
// tracing off (no tracer provider: the default), on (every message
// sampled: publish, store.append and deliver spans through a batch span
// processor into an exporter that drops them), and on but sampled out
// (a parent-based sampler whose root decision is "drop": spans are
// started but record nothing). Outboxes are drained every 512 messages,
// as session writers would.
func BenchmarkPublishDeliverTracing(b *testing.B) {
	modes := []struct {
		name string
		tp   func() (trace.TracerProvider, func())
	}{
		{"tracing=off", func() (trace.TracerProvider, func()) { return nil, func() {} }},
		{"tracing=on", func() (trace.TracerProvider, func()) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			return tp, func() { _ = tp.Shutdown(context.Background()) }
		}},
		{"tracing=sampled-out", func() (trace.TracerProvider, func()) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())),
				sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			return tp, func() { _ = tp.Shutdown(context.Background()) }
		}},
	}
	for _, n := range []int{1, 100} {
		for _, mode := range modes {
			b.Run(fmt.Sprintf("subs=%d/%s", n, mode.name), func(b *testing.B) {
				tp, stop := mode.tp()
				defer stop()
				br, drainAll := benchFanout(b, broker.Config{QueueSize: 1024, TracerProvider: tp}, n)
				pubs := []broker.Publication{{Topic: "bench.topic", Data: benchData}}
				ctx := context.Background()
				warmUp(func() {
					if _, err := br.Publish(ctx, pubs); err != nil {
						b.Fatal(err)
					}
				}, drainAll)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := br.Publish(ctx, pubs); err != nil {
						b.Fatal(err)
					}
					if i%512 == 511 {
						drainAll()
					}
				}
				b.StopTimer()
			})
		}
	}
}
