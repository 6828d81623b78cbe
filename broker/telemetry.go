package broker

import (
	"context"
	"sync/atomic"
	"time"

	telem "github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope of the broker's spans and metrics.
var scope = telem.Scope("broker")

// Publishing APIs: the api attribute of tidings_messages_published_total.
const (
	APIHTTP = "http"
	APIWS   = "ws"
	// APIOther counts publishes whose context names no API.
	APIOther = "other"
)

var apis = [...]string{APIHTTP, APIWS, APIOther}

// apiKey is the context key of the publishing API.
type apiKey struct{}

// WithAPI marks ctx as a publish through api (APIHTTP or APIWS): Publish
// counts the messages under that api in tidings_messages_published_total.
func WithAPI(ctx context.Context, api string) context.Context {
	return context.WithValue(ctx, apiKey{}, api)
}

func apiIndex(ctx context.Context) int {
	switch ctx.Value(apiKey{}) {
	case APIHTTP:
		return 0
	case APIWS:
		return 1
	default:
		return 2
	}
}

// MessagingSystem is the messaging.system attribute of Tidings' spans.
const MessagingSystem = "tidings"

// Span attributes of Tidings' own, beside the semantic conventions'.
const (
	// AttrOffset is a message's offset in its topic.
	AttrOffset = attribute.Key("tidings.offset")
	// AttrEpoch is the epoch of that offset.
	AttrEpoch = attribute.Key("tidings.epoch")
	// AttrSubscribers counts the local subscriptions a deliver span
	// queued the message to.
	AttrSubscribers = attribute.Key("tidings.subscribers")
)

// telemetry is the broker's tracer, propagator and metric registrations.
type telemetry struct {
	tracer trace.Tracer // nil when tracing is off
	prop   propagation.TextMapPropagator
}

// outcomeStats counts resumes by outcome (recovered or not) and resets
// by reason (history_lost, gap).
type outcomeStats struct {
	resumed          [2]atomic.Uint64 // [0] recovered=false, [1] recovered=true
	historyLost, gap atomic.Uint64
}

func (b *Broker) setupTelemetry() {
	b.tel.tracer, b.tel.prop = telem.Tracing(b.cfg.TracerProvider, b.cfg.Propagator, scope)
	if b.cfg.MeterProvider == nil {
		return
	}
	in := telem.NewInstruments(telem.Meter(b.cfg.MeterProvider, scope))
	// Every broker metric is read from its counters when scraped, so
	// publishing and delivering pay nothing for them.
	st := &b.stats
	kinds := telem.AttrsEach("kind", "exact", "wildcard")
	apiAttrs := telem.AttrsEach("api", apis[:]...)
	recovered := [2]metric.MeasurementOption{
		telem.Attrs(attribute.Bool("recovered", false)),
		telem.Attrs(attribute.Bool("recovered", true)),
	}
	reasons := telem.AttrsEach("reason", ResetHistoryLost, ResetGap)
	in.Observe(
		telem.UpDownCounter("tidings.sessions", "{session}", "Sessions open on this node.",
			func(o telem.Observation) { o(st.sessions.Load()) }),
		telem.UpDownCounter("tidings.subscriptions", "{subscription}", "Subscriptions held on this node, by kind (exact or wildcard).",
			func(o telem.Observation) {
				o(st.exactSubs.Load(), kinds[0])
				o(st.wildcardSubs.Load(), kinds[1])
			}),
		telem.UpDownCounter("tidings.topics", "{topic}", "Topics with at least one local exact subscriber.",
			func(o telem.Observation) { o(st.topics.Load()) }),
		telem.Counter("tidings.messages.published", "{message}", "Messages accepted for publishing on this node, by api (http, ws).",
			func(o telem.Observation) {
				for i := range apis {
					o(int64(st.published[i].Load()), apiAttrs[i])
				}
			}),
		telem.Counter("tidings.messages.delivered", "{message}", "Message frames queued to subscribers on this node (one per matching subscription).",
			func(o telem.Observation) { o(int64(st.delivered.Load())) }),
		telem.Counter("tidings.slow_consumers", "{session}", "Sessions whose outbound queue overflowed (closed with 1008 slow consumer).",
			func(o telem.Observation) { o(int64(st.slowConsumers.Load())) }),
		telem.Counter("tidings.resumes", "{subscription}", "Subscribes with since, by outcome (recovered true or false).",
			func(o telem.Observation) {
				for i := range recovered {
					o(int64(st.outcomes.resumed[i].Load()), recovered[i])
				}
			}),
		telem.Counter("tidings.resets", "{reset}", "Reset notices to local subscribers, by reason (history_lost, gap).",
			func(o telem.Observation) {
				o(int64(st.outcomes.historyLost.Load()), reasons[0])
				o(int64(st.outcomes.gap.Load()), reasons[1])
			}),
		telem.UpDownCounter("tidings.pattern_nodes", "{node}", "Nodes of the wildcard pattern index on this node (bounded by MaxPatternNodes).",
			func(o telem.Observation) { o(int64(b.patterns.size())) }),
		telem.Counter("tidings.pattern_refusals", "{subscription}", "Wildcard subscriptions refused because the pattern index was full.",
			func(o telem.Observation) { o(int64(st.patternRefusals.Load())) }),
		telem.UpDownCounter("tidings.outbound.bytes", "By", "Bytes queued to be written to every session on this node (bounded by -outbound-bytes).",
			func(o telem.Observation) { o(b.budget.Used()) }),
		telem.Counter("tidings.outbound.budget_cuts", "{session}", "Sessions cut as slow consumers because the node's outbound queues held -outbound-bytes.",
			func(o telem.Observation) { o(int64(b.budget.Cuts())) }),
	)
	// The broker has no logger: OpenTelemetry's error handler reports it
	// (on stderr unless the program installs its own).
	in.HandleErr("broker")
}

// startAppend runs when tracing is on: it records the publishing span's
// context in every message's trace carrier, so that each node that
// delivers them can link its deliver span to it, and starts the
// store.append span around the store's publish. With no span in ctx (a
// caller with no publish span of its own) it starts a publish span first;
// end ends both.
//
// A publish that is not sampled records nothing, and its messages carry
// no trace context: no node records a deliver span for them either, so
// the decision holds across nodes at the cost of a nil check each.
func (b *Broker) startAppend(ctx context.Context, msgs []*Message) (context.Context, func(error)) {
	var root trace.Span
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx, root = b.tel.tracer.Start(ctx, "publish", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(semconv.MessagingSystemKey.String(MessagingSystem), semconv.MessagingOperationTypeSend))
	}
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx, func(error) {
			if root != nil {
				root.End()
			}
		}
	}
	carrier := make(propagation.MapCarrier, 3)
	b.tel.prop.Inject(ctx, carrier)
	if len(carrier) > 0 {
		for _, m := range msgs {
			m.Trace = carrier
		}
	}
	ctx, span := b.tel.tracer.Start(ctx, "store.append", trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingSystemKey.String(MessagingSystem), messagingDestination(msgs))
		if len(msgs) > 1 {
			span.SetAttributes(semconv.MessagingBatchMessageCount(len(msgs)))
		}
	}
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "store unavailable")
		} else if len(msgs) == 1 && span.IsRecording() {
			span.SetAttributes(semconv.MessagingMessageID(msgs[0].ID), AttrOffset.Int64(int64(msgs[0].Offset)), AttrEpoch.String(msgs[0].Epoch))
		}
		span.End()
		if root != nil {
			if err != nil {
				root.SetStatus(codes.Error, "store unavailable")
			}
			root.End()
		}
	}
}

// messagingDestination is the topic of msgs, or the first topic of a
// batch over several.
func messagingDestination(msgs []*Message) attribute.KeyValue {
	return semconv.MessagingDestinationName(msgs[0].Topic)
}

// deliverTraced delivers m and records its deliver span: one per message
// on this node, whatever the number of subscribers, a child of the
// publish span carried by m.Trace and linked to it. A node with no
// subscriber for m records none.
func (b *Broker) deliverTraced(m *Message) {
	start := time.Now()
	n := b.deliver(m)
	if n == 0 {
		return
	}
	ctx := b.tel.prop.Extract(context.Background(), propagation.MapCarrier(m.Trace))
	pub := trace.SpanContextFromContext(ctx)
	_, span := b.tel.tracer.Start(ctx, "deliver",
		trace.WithTimestamp(start),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.Link{SpanContext: pub}),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String(MessagingSystem),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("deliver"),
			semconv.MessagingDestinationName(m.Topic),
			semconv.MessagingMessageID(m.ID),
			AttrOffset.Int64(int64(m.Offset)),
			AttrEpoch.String(m.Epoch),
			AttrSubscribers.Int64(int64(n)),
		))
	span.End()
}
