package e2e

import (
	"context"
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/ws"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedBenchNodes is benchNodes with a tracer provider per node (nil:
// tracing off): the same in-memory node, or three nodes over one Redis,
// publishing on the first and subscribing on the other two.
func tracedBenchNodes(b *testing.B, setup string, newTP func() trace.TracerProvider) (pub *broker.Broker, subs []*broker.Broker) {
	b.Helper()
	bcfg := func() broker.Config {
		return broker.Config{QueueSize: 1 << 20, QueueBytes: 1 << 30, TracerProvider: newTP()}
	}
	if setup == "memory" {
		st := memory.New(memory.Config{HistorySize: 1000})
		b.Cleanup(func() { _ = st.Close() })
		br := broker.New(bcfg(), st, ws.Encoder{})
		return br, []*broker.Broker{br}
	}
	cfg := redis.Config{URL: redistest.Start(b).URL()}
	newBroker := func() *broker.Broker { return newRedisBroker(b, cfg, bcfg()) }
	return newBroker(), []*broker.Broker{newBroker(), newBroker()}
}

// BenchmarkPublishToDeliverTracing is BenchmarkPublishToDeliverLatency
// with tracing off (no tracer provider) and on (every message sampled:
// publish, store.append and one deliver span per node, through a batch
// span processor into an exporter that drops them). ns/op is the mean
// publish-to-queued latency; docs/BENCHMARKS.md reports on/off.
func BenchmarkPublishToDeliverTracing(b *testing.B) {
	modes := []struct {
		name  string
		newTP func(b *testing.B) func() trace.TracerProvider
	}{
		{"tracing=off", func(*testing.B) func() trace.TracerProvider {
			return func() trace.TracerProvider { return nil }
		}},
		{"tracing=on", func(b *testing.B) func() trace.TracerProvider {
			return func() trace.TracerProvider {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				return tp
			}
		}},
	}
	for _, setup := range []string{"memory", "redis-3nodes"} {
		for _, mode := range modes {
			b.Run(setup+"/"+mode.name, func(b *testing.B) {
				pub, nodes := tracedBenchNodes(b, setup, mode.newTP(b))
				measureLatency(b, pub, subscribers(b, nodes, "bench.tracing"), "bench.tracing")
			})
		}
	}
}
