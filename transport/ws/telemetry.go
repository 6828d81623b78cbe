package ws

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/broker"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope of the transport's spans and
// metrics.
const scopeName = "github.com/tidings-io/tidings/transport/ws"

// Close reasons, the reason attribute of tidings_sessions_closed_total: a
// small fixed set, so that a client's free-text close reason never
// becomes a label (it is logged instead).
const (
	ReasonClient         = "client"           // the client sent a close frame (its code; 1005 when it had none)
	ReasonDropped        = "dropped"          // the connection ended without a close frame (1006)
	ReasonTimeout        = "timeout"          // the client was silent for two heartbeats (1006)
	ReasonShutdown       = "shutdown"         // graceful shutdown (1001)
	ReasonSlowConsumer   = "slow_consumer"    // the outbound queue overflowed (1008)
	ReasonTokenExpired   = "token_expired"    // the session's token expired (1008)
	ReasonRateLimited    = "rate_limited"     // commands over the rate limit, repeatedly (1008)
	ReasonPolicy         = "policy_violation" // another 1008
	ReasonProtocolError  = "protocol_error"   // an RFC 6455 violation (1002)
	ReasonUnsupported    = "unsupported_data" // a binary frame (1003)
	ReasonInvalidPayload = "invalid_payload"  // invalid UTF-8 or not a JSON object (1007)
	ReasonTooBig         = "message_too_big"  // an inbound message over the limit (1009)
	ReasonInternal       = "internal_error"   // a fault in the session (1011)
	ReasonOther          = "other"
)

// telemetry is the server's tracer and instruments. The per-message path
// pays for none of it: counters are atomics read when metrics are
// scraped, and the writer records its two histograms once per written
// batch.
type telemetry struct {
	tracer trace.Tracer // nil when tracing is off
	prop   propagation.TextMapPropagator

	opened  metric.Int64Counter
	closed  metric.Int64Counter
	latency metric.Float64Histogram
	depth   metric.Int64Histogram

	bytesIn, bytesOut atomic.Uint64
}

func (s *Server) setupTelemetry() {
	// Every line the server logs names its node.
	s.log = s.log.With("node", s.cfg.NodeID)
	t := &s.tel
	t.tracer = broker.Tracer(s.cfg.TracerProvider, scopeName)
	t.prop = s.cfg.Propagator
	if t.prop == nil {
		t.prop = broker.W3C()
	}
	m := broker.Meter(s.cfg.MeterProvider, scopeName)
	t.opened, _ = m.Int64Counter("tidings.sessions.opened",
		metric.WithUnit("{session}"), metric.WithDescription("WebSocket sessions opened (welcome sent)."))
	t.closed, _ = m.Int64Counter("tidings.sessions.closed",
		metric.WithUnit("{session}"),
		metric.WithDescription("WebSocket sessions ended, by close code (1006: dropped without a close frame; 1005: the client's close frame had no code) and reason."))
	t.latency, _ = m.Float64Histogram("tidings.delivery.latency",
		metric.WithUnit("s"),
		metric.WithDescription("From a message's acceptance by the publishing node to its frame written to a subscriber's socket; recorded once per written batch, for its longest-waiting message."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	t.depth, _ = m.Int64Histogram("tidings.outbound.queue.depth",
		metric.WithUnit("{frame}"),
		metric.WithDescription("Frames a session writer found queued and wrote in one batch."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
	if s.cfg.MeterProvider == nil {
		return
	}
	bytes, _ := m.Int64ObservableCounter("tidings.ws.io",
		metric.WithUnit("By"), metric.WithDescription("WebSocket bytes, frame headers included, by direction (in, out)."))
	sent, _ := m.Int64ObservableCounter("tidings.close.sent",
		metric.WithUnit("{frame}"), metric.WithDescription("Close frames sent, by close code."))
	received, _ := m.Int64ObservableCounter("tidings.close.received",
		metric.WithUnit("{session}"), metric.WithDescription("Sessions ended by the peer, by close code (1005: no code, 1006: dropped)."))
	dirIn := metric.WithAttributeSet(attribute.NewSet(attribute.String("direction", "in")))
	dirOut := metric.WithAttributeSet(attribute.NewSet(attribute.String("direction", "out")))
	var byCode [16]metric.ObserveOption
	for i := range byCode {
		byCode[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("code", strconv.Itoa(1000+i))))
	}
	_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(bytes, int64(t.bytesIn.Load()), dirIn)
		o.ObserveInt64(bytes, int64(t.bytesOut.Load()), dirOut)
		for i := range byCode {
			if n := s.stats.sent[i].Load(); n > 0 {
				o.ObserveInt64(sent, int64(n), byCode[i])
			}
			if n := s.stats.received[i].Load(); n > 0 {
				o.ObserveInt64(received, int64(n), byCode[i])
			}
		}
		return nil
	}, bytes, sent, received)
}

// written records one batch the writer wrote: its size, and the latency
// of its longest-waiting message (oldest is zero when it held none).
func (t *telemetry) written(ctx context.Context, frames int, oldest time.Time) {
	t.depth.Record(ctx, int64(frames))
	if !oldest.IsZero() {
		t.latency.Record(ctx, max(time.Since(oldest).Seconds(), 0))
	}
}

// traceFrom remembers the trace context of the upgrade request, when it
// carries one: the session's log lines name its trace id, and its publish
// spans link to it.
func (c *conn) traceFrom(h http.Header) {
	if h.Get("Traceparent") == "" {
		return
	}
	ctx := c.srv.tel.prop.Extract(context.Background(), propagation.HeaderCarrier(h))
	c.link = trace.SpanContextFromContext(ctx)
}

// startTelemetry counts the session opened.
func (c *conn) startTelemetry() {
	c.pubCtx = broker.WithAPI(c.ctx, broker.APIWS)
	c.started = time.Now()
	c.srv.tel.opened.Add(c.ctx, 1)
}

// logger returns the session's logger, with the attributes every session
// event carries; it is made on first use.
func (c *conn) logger() *slog.Logger {
	c.logOnce.Do(func() {
		c.log = c.srv.log.With("session", c.id, "remote", c.remote)
		if c.link.IsValid() {
			c.log = c.log.With("trace_id", c.link.TraceID().String())
		}
	})
	return c.log
}

// ended counts and logs the session's end: the close code and reason it
// ended with, by the rules of closeOutcome.
func (c *conn) ended() {
	c.mu.Lock()
	code, reason, mode := c.closeCode, c.closeReason, c.mode
	c.mu.Unlock()
	outcome, label := closeOutcome(mode, code, c.peerCode, reason, c.readErr)
	c.srv.tel.closed.Add(context.Background(), 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("code", codeLabel(outcome)), attribute.String("reason", label))))
	args := []any{"code", int(outcome), "reason", label, "duration", time.Since(c.started).Round(time.Millisecond).String()}
	if reason != "" {
		args = append(args, "detail", reason)
	}
	if c.subject != "" {
		args = append(args, "sub", c.subject)
	}
	c.logger().Info("session closed", args...)
}

// closeOutcome is the code and reason a session ended with: the client's
// code for a close the client began, 1006 for a connection that dropped,
// else the code the server sent.
func closeOutcome(mode closeMode, sent, peer ws.StatusCode, reason string, readErr error) (ws.StatusCode, string) {
	switch mode {
	case closeEcho:
		return peer, ReasonClient
	case closeCut:
		var ne net.Error
		if errors.As(readErr, &ne) && ne.Timeout() {
			return ws.StatusAbnormalClosure, ReasonTimeout
		}
		return ws.StatusAbnormalClosure, ReasonDropped
	case closeSlow:
		return sent, ReasonSlowConsumer
	case closeGraceful:
		return sent, ReasonShutdown
	}
	switch sent {
	case ws.StatusProtocolError:
		return sent, ReasonProtocolError
	case ws.StatusUnsupportedData:
		return sent, ReasonUnsupported
	case ws.StatusInvalidFramePayloadData:
		return sent, ReasonInvalidPayload
	case ws.StatusMessageTooBig:
		return sent, ReasonTooBig
	case ws.StatusInternalServerError:
		return sent, ReasonInternal
	case ws.StatusPolicyViolation:
		switch reason {
		case "token expired":
			return sent, ReasonTokenExpired
		case "rate limit exceeded":
			return sent, ReasonRateLimited
		}
		return sent, ReasonPolicy
	case ws.StatusGoingAway:
		return sent, ReasonShutdown
	}
	return sent, ReasonOther
}

// codeLabel is a close code as a metric label: the code itself for
// 1000–1015, "3xxx" or "4xxx" for the codes registered and private
// applications use, so that clients cannot mint label values.
func codeLabel(code ws.StatusCode) string {
	switch {
	case code >= 1000 && code < 1016:
		return strconv.Itoa(int(code))
	case code >= 3000 && code < 4000:
		return "3xxx"
	case code >= 4000 && code < 5000:
		return "4xxx"
	}
	return "other"
}

// startPublish starts the span of a WebSocket publish: a new trace (a
// session is long; its publishes are not one operation), linked to the
// trace of the upgrade request when it had one. With tracing off it
// returns the session's publish context and a no-op.
func (c *conn) startPublish(topic string) (context.Context, func([]*broker.Message, error)) {
	if c.srv.tel.tracer == nil {
		return c.pubCtx, func([]*broker.Message, error) {}
	}
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String(broker.MessagingSystem),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(topic),
			semconv.NetworkProtocolName("websocket"),
			semconv.NetworkPeerAddress(c.remote),
			attribute.String("tidings.session", c.id),
		),
	}
	if c.link.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: c.link}))
	}
	ctx, span := c.srv.tel.tracer.Start(c.pubCtx, "publish", opts...)
	return ctx, func(msgs []*broker.Message, err error) {
		if err != nil {
			span.SetStatus(codes.Error, broker.ErrorCode(err))
			span.SetAttributes(semconv.ErrorTypeKey.String(broker.ErrorCode(err)))
		} else if len(msgs) == 1 {
			span.SetAttributes(semconv.MessagingMessageID(msgs[0].ID), broker.AttrOffset.Int64(int64(msgs[0].Offset)))
		}
		span.End()
	}
}
