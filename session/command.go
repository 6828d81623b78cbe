package session

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
)

// Errors of the command codec, broker.Error values of code bad_request.
var (
	// ErrNotObject: the message is not a JSON object; the session is
	// closed (on a WebSocket, with 1007).
	ErrNotObject = broker.NewError(broker.ErrBadRequest, "frame is not a JSON object")
	// ErrBadCommand: a JSON object that is not a valid command; the client
	// gets an `error` reply and the session stays open.
	ErrBadCommand = broker.NewError(broker.ErrBadRequest, "bad command")
)

// Command is one decoded client command.
type Command struct {
	// Op is subscribe, unsubscribe, publish, ping, refresh, history,
	// presence or presence_stats.
	Op string
	// Ref is echoed in the answer ("" when absent).
	Ref string
	// Topic is the topic or pattern of subscribe, unsubscribe, publish
	// and history.
	Topic string
	// Data is the published value, byte for byte (publish only).
	Data json.RawMessage
	// IdempotencyKey makes a publish idempotent (publish only; "" for none).
	IdempotencyKey string
	// Since is the resume position of a subscribe, or where a history
	// starts after; nil for none.
	Since *broker.Position
	// Token is the new session token of a refresh.
	Token string
	// Limit bounds the messages of a history (0: the default).
	Limit int
	// Reverse asks a history for the newest messages first.
	Reverse bool
}

// wireCommand is a command as it appears on the wire.
type wireCommand struct {
	Op    string          `json:"op"`
	Ref   json.RawMessage `json:"ref"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	Token string          `json:"token"`
	// IdempotencyKey is the publish's idempotency_key.
	IdempotencyKey string `json:"idempotency_key"`
	Since          *Since `json:"since"`
	Limit          int    `json:"limit"`
	Reverse        bool   `json:"reverse"`
}

// DecodeCommand decodes one text frame. It returns an error wrapping
// ErrNotObject when p is not a JSON object, and one wrapping ErrBadCommand
// (with the ref, when it could be read) for an object that is not a valid
// command. The command's fields do not alias p.
func DecodeCommand(p []byte) (Command, error) {
	trimmed := bytes.TrimLeft(p, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(p) {
		return Command{}, ErrNotObject
	}
	var w wireCommand
	if err := json.Unmarshal(p, &w); err != nil {
		// Unmarshal fills the other fields before reporting a type error,
		// so the answer can still carry a ref that is a string.
		var c Command
		_ = json.Unmarshal(w.Ref, &c.Ref)
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return c, broker.NewError(ErrBadCommand, "bad command: field %s has the wrong type", te.Field)
		}
		return c, broker.NewError(ErrBadCommand, "bad command: %v", err)
	}
	var c Command
	if len(w.Ref) > 0 && string(w.Ref) != "null" {
		if err := json.Unmarshal(w.Ref, &c.Ref); err != nil {
			return Command{}, broker.NewError(ErrBadCommand, "bad command: ref must be a string")
		}
	}
	c.Op, c.Topic = w.Op, w.Topic
	switch w.Op {
	case "subscribe", "unsubscribe", "publish", "history", "presence", "presence_stats":
		if w.Topic == "" {
			return c, broker.NewError(ErrBadCommand, "bad command: %s needs a topic", w.Op)
		}
	case "ping":
	case "refresh":
		if w.Token == "" {
			return c, broker.NewError(ErrBadCommand, "bad command: refresh needs a token")
		}
		c.Token = w.Token
	case "":
		return c, broker.NewError(ErrBadCommand, "bad command: op is missing")
	default:
		return c, broker.NewError(ErrBadCommand, "bad command: unknown op")
	}
	if w.Op == "publish" {
		if len(w.Data) == 0 {
			return c, broker.NewError(ErrBadCommand, "bad command: publish needs data")
		}
		c.Data = w.Data
		c.IdempotencyKey = w.IdempotencyKey
	}
	if w.Op == "history" {
		if _, ok := protocol.HistoryLimit.Of(w.Limit); !ok {
			return c, broker.NewError(ErrBadCommand, "bad command: limit must be from 1 to %d", protocol.HistoryLimit.Max)
		}
		c.Limit, c.Reverse = w.Limit, w.Reverse
	}
	if w.Op == "subscribe" || w.Op == "history" {
		var ok bool
		if c.Since, ok = w.Since.Position(); !ok {
			return c, broker.NewError(ErrBadCommand, "bad command: since needs offset and epoch")
		}
	}
	return c, nil
}

// Since is a resume position as a request carries it (a command's or the
// server API's `since`): both fields must be there.
type Since struct {
	Offset *uint64 `json:"offset"`
	Epoch  *string `json:"epoch"`
}

// Position returns the position s names; nil for a nil s; false when a
// field is missing.
func (s *Since) Position() (*broker.Position, bool) {
	switch {
	case s == nil:
		return nil, true
	case s.Offset == nil || s.Epoch == nil:
		return nil, false
	}
	return &broker.Position{Offset: *s.Offset, Epoch: *s.Epoch}, true
}
