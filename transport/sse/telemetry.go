package sse

import (
	"context"
	"strconv"

	telem "github.com/tidings-io/tidings/internal/telemetry"
	"github.com/tidings-io/tidings/session"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// scope names the server's instruments.
var scope = telem.Scope("transport/sse")

// transportAttr names the transport in the metrics that every transport
// reports (sessions opened and closed, refusals).
var transportAttr = attribute.String("transport", "sse")

// openedAttrs are the attributes of tidings.sessions.opened.
var openedAttrs = metric.WithAttributeSet(attribute.NewSet(transportAttr))

// telemetry holds the server's instruments: the sessions metrics of the
// WebSocket transport, under this package's scope.
type telemetry struct {
	opened metric.Int64Counter
	closed metric.Int64Counter
}

func (s *Server) setupTelemetry() {
	m := telem.Meter(s.cfg.MeterProvider, scope)
	in := telem.NewInstruments(m)
	s.tel.opened = in.Int64Counter("tidings.sessions.opened",
		metric.WithUnit("{session}"), metric.WithDescription("Server-Sent Events streams opened (welcome sent)."))
	s.tel.closed = in.Int64Counter("tidings.sessions.closed",
		metric.WithUnit("{session}"),
		metric.WithDescription("Server-Sent Events streams ended, by close code (1006: dropped by the client) and reason."))
	if err := in.Err(); err != nil {
		s.log.Error("metrics: registering instruments", "scope", scope, "err", err)
	}
}

// countClosed counts a stream ended for cause with code.
func (s *Server) countClosed(cause session.Cause, code uint16) {
	s.tel.closed.Add(context.Background(), 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("code", strconv.Itoa(int(code))), attribute.String("reason", cause.Label()), transportAttr)))
}
