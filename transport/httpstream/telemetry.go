package httpstream

import (
	"context"
	"log/slog"
	"strconv"

	telem "github.com/tidings-io/tidings/internal/telemetry"
	"github.com/tidings-io/tidings/session"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Telemetry holds a transport's sessions metrics, those every transport
// reports: tidings.sessions.opened and tidings.sessions.closed, with the
// transport's name as their `transport` attribute.
type Telemetry struct {
	opened metric.Int64Counter
	closed metric.Int64Counter
	// transport names the transport; openedAttrs are the attributes of
	// tidings.sessions.opened.
	transport   attribute.KeyValue
	openedAttrs metric.MeasurementOption
}

// NewTelemetry returns the sessions metrics of the transport named
// transport, under scope, from mp (nil: none). what names its sessions in
// the descriptions ("HTTP streaming sessions"); an error registering the
// instruments is logged to log.
func NewTelemetry(mp metric.MeterProvider, scope, transport, what string, log *slog.Logger) *Telemetry {
	in := telem.NewInstruments(telem.Meter(mp, scope))
	attr := attribute.String("transport", transport)
	t := &Telemetry{
		transport:   attr,
		openedAttrs: metric.WithAttributeSet(attribute.NewSet(attr)),
	}
	t.opened = in.Int64Counter("tidings.sessions.opened",
		metric.WithUnit("{session}"), metric.WithDescription(what+" opened (welcome sent)."))
	t.closed = in.Int64Counter("tidings.sessions.closed",
		metric.WithUnit("{session}"),
		metric.WithDescription(what+" ended, by close code (1006: dropped by the client) and reason."))
	if err := in.Err(); err != nil {
		log.Error("metrics: registering instruments", "scope", scope, "err", err)
	}
	return t
}

// Opened counts a session opened.
func (t *Telemetry) Opened(ctx context.Context) { t.opened.Add(ctx, 1, t.openedAttrs) }

// Closed counts a session ended for cause with code.
func (t *Telemetry) Closed(cause session.Cause, code uint16) {
	t.closed.Add(context.Background(), 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("code", strconv.Itoa(int(code))), attribute.String("reason", cause.Label()), t.transport)))
}
