package session

import (
	"context"
	"errors"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
)

// The presence replies.
type (
	// Presence answers a `presence` op.
	Presence struct {
		Type    string                  `json:"type"`
		Ref     string                  `json:"ref,omitempty"`
		Topic   string                  `json:"topic"`
		Clients []control.PresenceEntry `json:"clients"`
	}
	// PresenceStats answers a `presence_stats` op.
	PresenceStats struct {
		Type     string `json:"type"`
		Ref      string `json:"ref,omitempty"`
		Topic    string `json:"topic"`
		Sessions int    `json:"sessions"`
		Users    int    `json:"users"`
	}
)

// presence runs a `presence` or `presence_stats` op: like history, it
// needs subscribe permission on the topic, an exact topic.
func (s *Session) presence(cmd Command) {
	if !s.mayRead(cmd, "presence") {
		return
	}
	if s.cfg.Presence == nil {
		s.replyError(cmd.Ref, broker.NewError(broker.ErrBadRequest, "presence is not enabled on this server"))
		return
	}
	var (
		reply any
		err   error
	)
	if cmd.Op == "presence" {
		var clients []control.PresenceEntry
		clients, err = s.cfg.Presence.Presence(s.ctx, cmd.Topic)
		reply = Presence{Type: "presence", Ref: cmd.Ref, Topic: cmd.Topic, Clients: clients}
	} else {
		var st control.PresenceStats
		st, err = s.cfg.Presence.PresenceStats(s.ctx, cmd.Topic)
		reply = PresenceStats{Type: "presence_stats", Ref: cmd.Ref, Topic: cmd.Topic, Sessions: st.Sessions, Users: st.Users}
	}
	if err != nil {
		if broker.ClientError(err).Code == protocol.CodeUnavailable {
			s.info.Log().Warn(cmd.Op+" failed", "topic", cmd.Topic, "err", err)
		}
		s.replyError(cmd.Ref, err)
		return
	}
	s.t.Reply(reply)
}

// Disconnect closes the session for the server API with code (4000–4999)
// and reason.
func (s *Session) Disconnect(code uint16, reason string) {
	s.info.Log().Info("disconnected by the server API", "code", code, "sub", s.info.Subject)
	s.t.Disconnect(code, reason)
}

// Revoke closes the session: its token was revoked.
func (s *Session) Revoke() {
	s.cfg.Refused.Add(limit.ReasonTokenRevoked)
	s.info.Log().Info("token revoked", "sub", s.info.Subject)
	s.t.Close(CauseRevoked)
}

// ServerSubscribe subscribes the session to topic for the server API:
// `subscribed` without ref, then the stream (after since when given). The
// session's permissions are not consulted. Subscribing again to a topic
// the session holds is no error.
func (s *Session) ServerSubscribe(ctx context.Context, topic string, since *broker.Position) error {
	err := s.bs.ServerSubscribe(ctx, topic, since)
	if errors.Is(err, broker.ErrAlreadySubscribed) {
		return nil
	}
	return err
}

// ServerUnsubscribe ends the session's subscription to topic for the
// server API, telling the client with `unsubscribed` without ref; a
// session not subscribed is left alone.
func (s *Session) ServerUnsubscribe(topic string) {
	if s.bs.Unsubscribe(topic) == nil {
		s.t.Reply(Unsubscribed{Type: "unsubscribed", Topic: topic})
	}
}
