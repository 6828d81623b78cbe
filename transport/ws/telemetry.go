package ws

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	telem "github.com/tidings-io/tidings/internal/telemetry"
	"github.com/tidings-io/tidings/session"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope of the transport's spans and
// metrics.
var scope = telem.Scope("transport/ws")

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

// transportAttr names the transport in the metrics that every transport
// reports (sessions opened and closed, refusals).
var transportAttr = attribute.String("transport", "websocket")

// openedAttrs are the attributes of tidings.sessions.opened.
var openedAttrs = telem.Attrs(transportAttr)

func (s *Server) setupTelemetry() {
	// Every line the server logs names its node.
	s.log = s.log.With("node", s.cfg.NodeID)
	t := &s.tel
	t.tracer, t.prop = telem.Tracing(s.cfg.TracerProvider, s.cfg.Propagator, scope)
	in := telem.NewInstruments(telem.Meter(s.cfg.MeterProvider, scope))
	defer in.LogErr(s.log, scope)
	t.opened = in.Int64Counter("tidings.sessions.opened",
		metric.WithUnit("{session}"), metric.WithDescription("WebSocket sessions opened (welcome sent)."))
	t.closed = in.Int64Counter("tidings.sessions.closed",
		metric.WithUnit("{session}"),
		metric.WithDescription("WebSocket sessions ended, by close code (1006: dropped without a close frame; 1005: the client's close frame had no code) and reason."))
	t.latency = in.Seconds("tidings.delivery.latency",
		"From a message's acceptance by the publishing node to its frame written to a subscriber's socket; recorded once per written batch, for its longest-waiting message.")
	t.depth = in.Int64Histogram("tidings.outbound.queue.depth",
		metric.WithUnit("{frame}"),
		metric.WithDescription("Frames a session writer found queued and wrote in one batch."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
	if s.cfg.MeterProvider == nil {
		return
	}
	dirs := telem.AttrsEach("direction", "in", "out")
	codes := make([]string, len(s.stats.sent))
	for i := range codes {
		codes[i] = strconv.Itoa(1000 + i)
	}
	byCode := telem.AttrsEach("code", codes...)
	// byCodes reports the codes counted at least once in counts.
	byCodes := func(counts *[16]atomic.Uint64) func(telem.Observation) {
		return func(o telem.Observation) {
			for i := range counts {
				if n := counts[i].Load(); n > 0 {
					o(int64(n), byCode[i])
				}
			}
		}
	}
	in.Observe(
		telem.Counter("tidings.ws.io", "By", "WebSocket bytes, frame headers included, by direction (in, out).",
			func(o telem.Observation) {
				o(int64(t.bytesIn.Load()), dirs[0])
				o(int64(t.bytesOut.Load()), dirs[1])
			}),
		telem.Counter("tidings.close.sent", "{frame}", "Close frames sent, by close code.", byCodes(&s.stats.sent)),
		telem.Counter("tidings.close.received", "{session}", "Sessions ended by the peer, by close code (1005: no code, 1006: dropped).", byCodes(&s.stats.received)),
	)
	s.compressionMetrics(in)
}

// compressionMetrics registers the permessage-deflate metrics, read from
// the encoder's counters when scraped (zero while compression is off).
func (s *Server) compressionMetrics(in *telem.Instruments) {
	in.Observe(
		telem.Counter("tidings.ws.compressed.messages", "{frame}", "Frames sent compressed (permessage-deflate): a message's frame once per node (once per wildcard pattern), whatever its subscribers, and each reply a session compressed for itself.",
			func(o telem.Observation) { o(int64(s.CompressionStats().Frames)) }),
		telem.Counter("tidings.ws.compression.saved", "By", "Payload bytes compression saved on the frames it compressed, counted once per frame built (not per subscriber it is sent to).",
			func(o telem.Observation) { o(int64(s.CompressionStats().Saved)) }),
		telem.UpDownCounter("tidings.ws.inflate.window", "By", "Bytes the sessions' inflate windows hold: the last 32 KiB (at most) each client that uses context takeover sent, for its next message.",
			func(o telem.Observation) { o(s.CompressionStats().InflateWindowBytes) }),
	)
	ratio, err := in.Meter().Float64ObservableGauge("tidings.ws.compression.ratio",
		metric.WithUnit("1"), metric.WithDescription("Payload bytes before compression over bytes after, over every frame compressed so far (0 before the first)."))
	if err != nil {
		s.log.Error("metrics: registering instruments", "scope", scope, "err", err)
		return
	}
	in.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.CompressionStats()
		r := 0.0
		if st.Out > 0 {
			r = float64(st.In) / float64(st.Out)
		}
		o.ObserveFloat64(ratio, r)
		return nil
	}, ratio)
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
	c.started = time.Now()
	c.srv.tel.opened.Add(c.ctx, 1, openedAttrs)
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

// ended counts and logs the session's end: the close code and cause it
// ended with (see outcome).
func (c *conn) ended() {
	cause, code, reason := c.closeState()
	outcome := c.outcome(cause, code)
	c.srv.tel.closed.Add(context.Background(), 1, telem.Attrs(
		attribute.String("code", codeLabel(outcome)), attribute.String("reason", cause.Label()), transportAttr))
	args := []any{"code", int(outcome), "reason", cause.Label(), "duration", time.Since(c.started).Round(time.Millisecond).String()}
	if cause == session.CauseClient {
		reason = c.closeReason
	}
	if reason != "" && reason != cause.Reason() {
		args = append(args, "detail", reason)
	}
	if sub := c.session.Subject(); sub != "" {
		args = append(args, "sub", sub)
	}
	c.logger().Info("session closed", args...)
}

// outcome is the code a session ended with: the client's code for a
// close the client began (1005 when its close frame had none), 1006 for
// a connection that dropped, else the code the server sent.
func (c *conn) outcome(cause session.Cause, sent ws.StatusCode) ws.StatusCode {
	switch cause {
	case session.CauseClient:
		return c.peerCode
	case session.CauseDropped, session.CauseTimeout:
		return ws.StatusAbnormalClosure
	}
	return sent
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
