package session

import (
	"context"
	"errors"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// publish runs a publish for a session allowed to publish.
func (s *Session) publish(cmd Command) {
	s.mu.Lock()
	perms := s.info.Permissions
	s.mu.Unlock()
	err := broker.CheckPublish(perms, []broker.Publication{{Topic: cmd.Topic, Data: cmd.Data}})
	if err == nil || errors.Is(err, broker.ErrForbidden) {
		// The namespace's rule first: a topic closed to clients is
		// refused as such, whatever the session's permissions.
		if ruleErr := s.checkClientPublish(cmd.Topic); ruleErr != nil {
			err = ruleErr
		} else if err != nil && s.cfg.Tokens == nil {
			err = broker.NewError(broker.ErrForbidden, "publishing needs a loopback connection or a token that allows it")
		}
	}
	if err != nil {
		s.countRefusal(err)
		s.replyError(cmd.Ref, err)
		return
	}
	if !s.cfg.Publishes.Enter() {
		s.replyError(cmd.Ref, broker.NewError(broker.ErrUnavailable, "server shutting down"))
		return
	}
	defer s.cfg.Publishes.Leave()
	ctx, end := s.startPublish(cmd.Topic)
	data := cmd.Data
	a, _, err := s.hook(ctx, hooks.Publish, cmd.Topic, data, nil)
	if err != nil {
		end(nil, err)
		s.hookRefused(cmd.Ref, hooks.Publish, err)
		return
	}
	if a.Data != nil {
		data = a.Data // the backend replaced it
	}
	msgs, err := s.cfg.Broker.Publish(ctx, []broker.Publication{{Topic: cmd.Topic, Data: data, IdempotencyKey: cmd.IdempotencyKey}})
	end(msgs, err)
	if err != nil {
		if code := broker.ClientError(err).Code; code == protocol.CodeUnavailable || code == protocol.CodeInternal {
			s.info.Log().Warn("publish failed", "err", err)
		}
		s.replyError(cmd.Ref, err)
		return
	}
	m := msgs[0]
	s.t.Reply(Published{Type: "published", Ref: cmd.Ref, ID: m.ID, Offset: m.Offset, Epoch: m.Epoch})
}

// startPublish starts the span of a publish: a new trace (a session is
// long; its publishes are not one operation), linked to the trace of the
// request that opened the session when it had one. With tracing off it
// returns the session's publish context and a no-op.
func (s *Session) startPublish(topic string) (context.Context, func([]*broker.Message, error)) {
	if s.cfg.Tracer == nil {
		return s.pubCx, func([]*broker.Message, error) {}
	}
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String(broker.MessagingSystem),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(topic),
			semconv.NetworkProtocolName(s.cfg.Protocol),
			semconv.NetworkPeerAddress(s.info.Remote),
			attribute.String("tidings.session", s.info.ID),
		),
	}
	if s.info.Link.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: s.info.Link}))
	}
	ctx, span := s.cfg.Tracer.Start(s.pubCx, "publish", opts...)
	return ctx, func(msgs []*broker.Message, err error) {
		if err != nil {
			code := broker.ClientError(err).Code
			span.SetStatus(codes.Error, code)
			span.SetAttributes(semconv.ErrorTypeKey.String(code))
		} else if len(msgs) == 1 {
			span.SetAttributes(semconv.MessagingMessageID(msgs[0].ID), broker.AttrOffset.Int64(int64(msgs[0].Offset)))
		}
		span.End()
	}
}
