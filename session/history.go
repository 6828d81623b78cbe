package session

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
)

// History answers a `history` op (with Type and Ref) and GET /v1/history
// (without): the topic's current position and its messages still in
// history. Recovered is false, with no messages, when the since asked for
// is of another epoch or older than history.
type History struct {
	Type      string           `json:"type,omitempty"`
	Ref       string           `json:"ref,omitempty"`
	Topic     string           `json:"topic"`
	Offset    uint64           `json:"offset"`
	Epoch     string           `json:"epoch"`
	Recovered bool             `json:"recovered"`
	Messages  []HistoryMessage `json:"messages"`
}

// HistoryMessage is a message as in a `message` frame, without "type".
type HistoryMessage struct {
	Topic  string          `json:"topic"`
	ID     string          `json:"id"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Time   string          `json:"time"`
	Data   json.RawMessage `json:"data"`
}

// ReadHistory reads topic's history from b: after since when not nil,
// else the last messages; at most limit (0: protocol.HistoryLimit.Default), oldest
// first unless reverse. The caller has checked that it may.
func ReadHistory(ctx context.Context, b *broker.Broker, topic string, since *broker.Position, limit int, reverse bool) (History, error) {
	if limit <= 0 {
		limit = protocol.HistoryLimit.Default
	}
	msgs, pos, recovered, err := b.History(ctx, topic, since, limit)
	if err != nil {
		return History{}, err
	}
	h := History{Topic: topic, Offset: pos.Offset, Epoch: pos.Epoch, Recovered: recovered, Messages: make([]HistoryMessage, len(msgs))}
	for i, m := range msgs {
		j := i
		if reverse {
			j = len(msgs) - 1 - i
		}
		h.Messages[j] = HistoryMessage{Topic: m.Topic, ID: m.ID, Offset: m.Offset, Epoch: m.Epoch,
			Time: m.Time.UTC().Format(time.RFC3339Nano), Data: m.Data}
	}
	return h, nil
}

// history runs a `history` op: it needs subscribe permission on the
// topic, an exact topic.
func (s *Session) history(cmd Command) {
	if !s.mayRead(cmd, "history") {
		return
	}
	h, err := ReadHistory(s.ctx, s.cfg.Broker, cmd.Topic, cmd.Since, cmd.Limit, cmd.Reverse)
	if err != nil {
		if broker.ClientError(err).Code == protocol.CodeUnavailable {
			s.info.Log().Warn("history failed", "topic", cmd.Topic, "err", err)
		}
		s.replyError(cmd.Ref, err)
		return
	}
	h.Type, h.Ref = "history", cmd.Ref
	s.t.Reply(RawReply(AppendHistory(nil, h)))
}

// mayRead checks that cmd names an exact topic the session may subscribe
// to, for reading its what (history, presence); otherwise it answers the
// command and returns false.
func (s *Session) mayRead(cmd Command, what string) bool {
	if err := broker.ValidateTopic(cmd.Topic); err != nil {
		s.replyError(cmd.Ref, err)
		return false
	}
	if perms := s.permissions(); perms != nil && !perms.AllowSubscribe(cmd.Topic) {
		err := broker.NewError(broker.ErrForbidden, "forbidden: may not read the %s of %s", what, cmd.Topic)
		s.countRefusal(err)
		s.replyError(cmd.Ref, err)
		return false
	}
	return true
}
