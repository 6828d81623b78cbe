package tracing

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// W3C is the propagator the broker uses unless OTEL_PROPAGATORS says
// otherwise: W3C trace context (traceparent, tracestate) and baggage.
func W3C() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Inject writes the trace context and baggage of ctx into carrier under
// their W3C names (traceparent, tracestate, baggage), the form a message
// carries in broker.Message.Trace and in the Redis relay envelope. It
// writes nothing when ctx holds no valid span context or baggage.
func Inject(ctx context.Context, carrier map[string]string) {
	W3C().Inject(ctx, propagation.MapCarrier(carrier))
}

// Extract returns ctx with the remote span context and baggage read from
// carrier, as written by Inject.
func Extract(ctx context.Context, carrier map[string]string) context.Context {
	return W3C().Extract(ctx, propagation.MapCarrier(carrier))
}
