package httpapi

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tidings-io/tidings/broker"
	telem "github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope of the API's spans and metrics.
var scope = telem.Scope("transport/httpapi")

// telemetry is the API's tracer and instruments.
type telemetry struct {
	tracer   trace.Tracer // nil when tracing is off
	prop     propagation.TextMapPropagator
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

func (a *API) setupTelemetry() {
	t := &a.tel
	t.tracer, t.prop = telem.Tracing(a.cfg.TracerProvider, a.cfg.Propagator, scope)
	in := telem.NewInstruments(telem.Meter(a.cfg.MeterProvider, scope))
	t.requests = in.Int64Counter("tidings.http.requests",
		metric.WithUnit("{request}"),
		metric.WithDescription("HTTP requests answered, by route (the matched pattern) and status; WebSocket upgrades count as 101 when the session ends."))
	t.duration = in.Seconds("tidings.http.request.duration",
		"Time to answer an HTTP request, by route (WebSocket sessions excluded).")
	in.LogErr(a.cfg.Logger, scope)
	if a.cfg.MeterProvider == nil {
		return
	}
	if err := a.refused.RegisterMetric(in.Meter(), attribute.String("transport", "http")); err != nil {
		a.cfg.Logger.Error("metrics: tidings.refused", "err", err)
	}
}

// serve routes r and counts it by route and status.
func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	a.mux.ServeHTTP(sw, r)
	route := r.Pattern // set by the mux: a fixed set of patterns
	if route == "" || route == "/" {
		route = "other"
	}
	status := sw.code()
	a.tel.requests.Add(r.Context(), 1, telem.Attrs(attribute.String("route", route), attribute.String("status", strconv.Itoa(status))))
	if !sw.hijacked {
		a.tel.duration.Record(r.Context(), time.Since(start).Seconds(), telem.Attrs(attribute.String("route", route)))
	}
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Hijack hands the connection to the WebSocket upgrade, as 101.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
		w.status = http.StatusSwitchingProtocols
	}
	return nc, rw, err
}

// Flush flushes the response, when the underlying writer can.
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status answered: 200 when the handler wrote nothing.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// startPublish marks r as an HTTP publish and, with tracing on, starts its
// publish span: an HTTP server span that continues the trace of the
// request's traceparent (and its tracestate and baggage), or starts one.
// end sets the response status and ends the span.
func (a *API) startPublish(w http.ResponseWriter, r *http.Request) (_ *http.Request, end func()) {
	ctx := broker.WithAPI(r.Context(), broker.APIHTTP)
	if a.tel.tracer == nil {
		return r.WithContext(ctx), func() {}
	}
	ctx = a.tel.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.HTTPRoute(r.Pattern),
		semconv.URLPath(r.URL.Path),
		semconv.URLScheme(scheme),
		semconv.ServerAddress(r.Host),
		semconv.NetworkProtocolVersion(strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)),
		semconv.MessagingSystemKey.String(broker.MessagingSystem),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
	}
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, semconv.NetworkPeerAddress(host), semconv.ClientAddress(a.resolver.ClientIP(r).String()))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.NetworkPeerPort(p))
		}
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	ctx, span := a.tel.tracer.Start(ctx, "publish", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return r.WithContext(ctx), func() {
		status := http.StatusOK
		if sw, ok := w.(*statusWriter); ok {
			status = sw.code()
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		}
		span.End()
	}
}

// describePublish adds the published messages to the publish span in
// ctx, when it records.
func describePublish(ctx context.Context, msgs []*broker.Message) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() || len(msgs) == 0 {
		return
	}
	span.SetAttributes(semconv.MessagingDestinationName(msgs[0].Topic))
	if len(msgs) == 1 {
		span.SetAttributes(semconv.MessagingMessageID(msgs[0].ID), broker.AttrOffset.Int64(int64(msgs[0].Offset)), broker.AttrEpoch.String(msgs[0].Epoch))
	} else {
		span.SetAttributes(semconv.MessagingBatchMessageCount(len(msgs)))
	}
}
