package redis

import (
	"context"
	"log/slog"
	"time"

	telem "github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

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

// newTelemetry creates the store's instruments on mp and logs on log what
// could not be registered.
func newTelemetry(mp metric.MeterProvider, log *slog.Logger) telemetry {
	scope := telem.Scope("store/redis")
	in := telem.NewInstruments(telem.Meter(mp, scope))
	var t telemetry
	// Its buckets stop at 2.5 s, just above DefaultTimeout (2 s).
	t.roundTrip = in.Seconds("tidings.redis.round_trip",
		"Round trip of a Redis script or ping, by op (publish, since, ping).",
		metric.WithExplicitBucketBoundaries(telem.LatencyBucketsUpTo(2.5)...))
	t.reconnects = in.Int64Counter("tidings.redis.reconnects",
		metric.WithUnit("{reconnect}"),
		metric.WithDescription("Times Redis answered again after failing: conn=commands (health check) or pubsub (a relay connection)."))
	t.repairs = in.Int64Counter("tidings.gap_repairs",
		metric.WithUnit("{repair}"),
		metric.WithDescription("Missed relayed messages caught up: outcome=recovered (from history) or reset (history no longer had them)."))
	in.LogErr(log, scope)
	ops := telem.AttrsEach("op", "publish", "since", "ping")
	t.opPublish, t.opSince, t.opPing = ops[0], ops[1], ops[2]
	conns := telem.AttrsEach("conn", "commands", "pubsub")
	t.connCommands, t.connPubSub = conns[0], conns[1]
	outcomes := telem.AttrsEach("outcome", "recovered", "reset")
	t.repaired, t.gapReset = outcomes[0], outcomes[1]
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
