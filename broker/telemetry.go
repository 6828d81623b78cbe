package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	telem "github.com/tidings-io/tidings/internal/telemetry"
	"go.opentelemetry.io/otel"
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
	b.tel.tracer = telem.Tracer(b.cfg.TracerProvider, scope)
	b.tel.prop = b.cfg.Propagator
	if b.tel.prop == nil {
		b.tel.prop = telem.W3C()
	}
	if b.cfg.MeterProvider == nil {
		return
	}
	in := telem.NewInstruments(telem.Meter(b.cfg.MeterProvider, scope))
	// Every broker metric is read from its counters when scraped, so
	// publishing and delivering pay nothing for them.
	sessions := in.Int64ObservableUpDownCounter("tidings.sessions",
		metric.WithUnit("{session}"), metric.WithDescription("Sessions open on this node."))
	subs := in.Int64ObservableUpDownCounter("tidings.subscriptions",
		metric.WithUnit("{subscription}"), metric.WithDescription("Subscriptions held on this node, by kind (exact or wildcard)."))
	topics := in.Int64ObservableUpDownCounter("tidings.topics",
		metric.WithUnit("{topic}"), metric.WithDescription("Topics with at least one local exact subscriber."))
	published := in.Int64ObservableCounter("tidings.messages.published",
		metric.WithUnit("{message}"), metric.WithDescription("Messages accepted for publishing on this node, by api (http, ws)."))
	delivered := in.Int64ObservableCounter("tidings.messages.delivered",
		metric.WithUnit("{message}"), metric.WithDescription("Message frames queued to subscribers on this node (one per matching subscription)."))
	slow := in.Int64ObservableCounter("tidings.slow_consumers",
		metric.WithUnit("{session}"), metric.WithDescription("Sessions whose outbound queue overflowed (closed with 1008 slow consumer)."))
	resumes := in.Int64ObservableCounter("tidings.resumes",
		metric.WithUnit("{subscription}"), metric.WithDescription("Subscribes with since, by outcome (recovered true or false)."))
	patternNodes := in.Int64ObservableUpDownCounter("tidings.pattern_nodes",
		metric.WithUnit("{node}"), metric.WithDescription("Nodes of the wildcard pattern index on this node (bounded by MaxPatternNodes)."))
	patternRefusals := in.Int64ObservableCounter("tidings.pattern_refusals",
		metric.WithUnit("{subscription}"), metric.WithDescription("Wildcard subscriptions refused because the pattern index was full."))
	outbound := in.Int64ObservableUpDownCounter("tidings.outbound.bytes",
		metric.WithUnit("By"), metric.WithDescription("Bytes queued to be written to every session on this node (bounded by -outbound-bytes)."))
	budgetCuts := in.Int64ObservableCounter("tidings.outbound.budget_cuts",
		metric.WithUnit("{session}"), metric.WithDescription("Sessions cut as slow consumers because the node's outbound queues held -outbound-bytes."))
	resets := in.Int64ObservableCounter("tidings.resets",
		metric.WithUnit("{reset}"), metric.WithDescription("Reset notices to local subscribers, by reason (history_lost, gap)."))

	kindExact := metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", "exact")))
	kindWild := metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", "wildcard")))
	var apiAttrs [len(apis)]metric.ObserveOption
	for i, a := range apis {
		apiAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("api", a)))
	}
	recovered := [2]metric.ObserveOption{
		metric.WithAttributeSet(attribute.NewSet(attribute.Bool("recovered", false))),
		metric.WithAttributeSet(attribute.NewSet(attribute.Bool("recovered", true))),
	}
	lost := metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", ResetHistoryLost)))
	gap := metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", ResetGap)))
	in.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := &b.stats
		o.ObserveInt64(sessions, st.sessions.Load())
		o.ObserveInt64(subs, st.exactSubs.Load(), kindExact)
		o.ObserveInt64(subs, st.wildcardSubs.Load(), kindWild)
		o.ObserveInt64(topics, st.topics.Load())
		o.ObserveInt64(patternNodes, int64(b.patterns.size()))
		o.ObserveInt64(outbound, b.budget.Used())
		o.ObserveInt64(budgetCuts, int64(b.budget.Cuts()))
		o.ObserveInt64(patternRefusals, int64(st.patternRefusals.Load()))
		for i := range apis {
			o.ObserveInt64(published, int64(st.published[i].Load()), apiAttrs[i])
		}
		o.ObserveInt64(delivered, int64(st.delivered.Load()))
		o.ObserveInt64(slow, int64(st.slowConsumers.Load()))
		for i := range recovered {
			o.ObserveInt64(resumes, int64(st.outcomes.resumed[i].Load()), recovered[i])
		}
		o.ObserveInt64(resets, int64(st.outcomes.historyLost.Load()), lost)
		o.ObserveInt64(resets, int64(st.outcomes.gap.Load()), gap)
		return nil
	}, sessions, subs, topics, published, delivered, slow, resumes, resets, patternNodes, patternRefusals, outbound, budgetCuts)
	// The broker has no logger: OpenTelemetry's error handler reports it
	// (on stderr unless the program installs its own).
	if err := in.Err(); err != nil {
		otel.Handle(fmt.Errorf("broker: metrics: %w", err))
	}
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
