package redis

import (
	"context"
	"time"

	"github.com/tidings-io/tidings/broker"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope of the store's metrics.
const scopeName = "github.com/tidings-io/tidings/store/redis"

// telemetry holds the store's instruments; with no MeterProvider they are
// no-ops.
type telemetry struct {
	roundTrip  metric.Float64Histogram
	reconnects metric.Int64Counter
	repairs    metric.Int64Counter

	opPublish, opSince, opPing metric.RecordOption
	connCommands, connPubSub   metric.AddOption
	repaired, gapReset         metric.AddOption
}

func newTelemetry(mp metric.MeterProvider) telemetry {
	m := broker.Meter(mp, scopeName)
	var t telemetry
	t.roundTrip, _ = m.Float64Histogram("tidings.redis.round_trip",
		metric.WithUnit("s"),
		metric.WithDescription("Round trip of a Redis script or ping, by op (publish, since, ping)."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
	t.reconnects, _ = m.Int64Counter("tidings.redis.reconnects",
		metric.WithUnit("{reconnect}"),
		metric.WithDescription("Times Redis answered again after failing: conn=commands (health check) or pubsub (a relay connection)."))
	t.repairs, _ = m.Int64Counter("tidings.gap_repairs",
		metric.WithUnit("{repair}"),
		metric.WithDescription("Missed relayed messages caught up: outcome=recovered (from history) or reset (history no longer had them)."))
	rec := func(k, v string) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String(k, v)))
	}
	t.opPublish, t.opSince, t.opPing = rec("op", "publish"), rec("op", "since"), rec("op", "ping")
	t.connCommands, t.connPubSub = rec("conn", "commands"), rec("conn", "pubsub")
	t.repaired, t.gapReset = rec("outcome", "recovered"), rec("outcome", "reset")
	return t
}

// observe records the round trip of one operation that started at start.
func (t *telemetry) observe(ctx context.Context, start time.Time, op metric.RecordOption) {
	t.roundTrip.Record(ctx, time.Since(start).Seconds(), op)
}

// describeAppend adds the Redis attributes to the broker's store.append
// span in ctx, when it records.
func describeAppend(ctx context.Context, cluster bool) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(semconv.DBSystemNameRedis, semconv.DBOperationName("EVALSHA"),
		attribute.Bool("tidings.redis.cluster", cluster))
}
