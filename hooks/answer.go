package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/protocol"
)

// Answer is what a backend's allow answer gives, checked. Only the fields
// of the hook that was called are set; the others a backend sent are
// dropped.
type Answer struct {
	// User is the user the session takes (connect). Empty: the session
	// keeps the one it has (its token's sub, or none).
	User string
	// Info replaces the session's info (connect, refresh): a JSON object
	// of at most auth.MaxInfoBytes. Nil: the session keeps its own.
	Info json.RawMessage
	// Channels are exact topics the session is subscribed to when it
	// opens (connect), at most auth.MaxChannels, each once.
	Channels []string
	// Expires is when the session's credentials end unless refreshed
	// (connect, refresh). Zero: the backend set none.
	Expires time.Time
	// Data replaces the published message's data (publish): a JSON
	// value, byte for byte as the backend sent it. Nil (absent or JSON
	// null): the message keeps its own.
	Data json.RawMessage
}

// Bounds of what a backend answers.
const (
	// MaxMessageBytes bounds the message of a refusal, in bytes: a longer
	// one is cut (at a character boundary).
	MaxMessageBytes = 1024
	// MaxUserBytes bounds the user a connect answer names: a longer one
	// makes the answer invalid.
	MaxUserBytes = 1024
)

// Errors of Call. A refusal is a *broker.Error with the backend's code
// and message that wraps ErrDenied; a failure is a *broker.Error wrapping
// broker.ErrUnavailable, with the message UnavailableMessage, whose cause
// wraps ErrTimeout, ErrOverload or ErrBackend.
var (
	// ErrDenied: the backend answered allow false.
	ErrDenied = errors.New("hooks: denied by the backend")
	// ErrTimeout: the call reached its timeout (Config.Timeout, or the
	// caller's deadline) while a request was open.
	ErrTimeout = errors.New("hooks: timeout")
	// ErrOverload: the call found no free slot (Config.MaxConcurrent)
	// before its timeout.
	ErrOverload = errors.New("hooks: too many hook requests in flight")
	// ErrBackend: the backend could not be reached, answered another
	// status than 200, or an answer that is not valid.
	ErrBackend = errors.New("hooks: backend failed")
	// ErrOff: Call was asked for a hook that is off (no URL). It is a
	// fault of the caller, not a *broker.Error: a client is told
	// "internal".
	ErrOff = errors.New("hooks: hook is off")
)

// UnavailableMessage is the message of every failed call: the client
// learns no more; the log has the reason.
const UnavailableMessage = "backend unavailable"

// wireAnswer is the JSON body of an answer.
type wireAnswer struct {
	Allow    *bool           `json:"allow"`
	Code     string          `json:"code"`
	Message  string          `json:"message"`
	User     string          `json:"user"`
	Info     json.RawMessage `json:"info"`
	Channels []string        `json:"channels"`
	Expires  string          `json:"expires"`
	Data     json.RawMessage `json:"data"`
}

// The kinds of refusals, one per client code a backend may use: each is
// what errors.Is matches besides ErrDenied. Their messages are the
// default of a refusal that gives none.
var (
	deniedBadRequest   = &broker.Error{Code: protocol.CodeBadRequest, Message: "bad request"}
	deniedUnauthorized = &broker.Error{Code: protocol.CodeUnauthorized, Message: "unauthorized"}
	deniedForbidden    = &broker.Error{Code: protocol.CodeForbidden, Message: "forbidden"}
	deniedNotFound     = &broker.Error{Code: protocol.CodeNotFound, Message: "not found"}
	deniedRateLimited  = &broker.Error{Code: protocol.CodeRateLimited, Message: "rate limited"}
	deniedTooLarge     = &broker.Error{Code: protocol.CodeTooLarge, Message: "too large"}
)

// deniedKind returns the kind of a refusal with code: forbidden for a
// code that is not one of the protocol's client codes (unavailable and
// internal included: those are the node's to say).
func deniedKind(code string) *broker.Error {
	switch code {
	case protocol.CodeBadRequest:
		return deniedBadRequest
	case protocol.CodeUnauthorized:
		return deniedUnauthorized
	case protocol.CodeNotFound:
		return deniedNotFound
	case protocol.CodeRateLimited:
		return deniedRateLimited
	case protocol.CodeTooLarge:
		return deniedTooLarge
	default:
		return deniedForbidden
	}
}

// denied is the error of a refusal: the backend's code (or forbidden) and
// message (cut at MaxMessageBytes; the code's default when empty).
func denied(code, message string) *broker.Error {
	kind := deniedKind(code)
	if message == "" {
		message = kind.Message
	}
	return broker.WrapErrorf(kind, ErrDenied, "%s", cut(message, MaxMessageBytes))
}

// cut returns s cut to at most n bytes, at a character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// decode reads raw, an answer to a kind hook: the Answer of an allow, the
// error of a refusal (deny, wrapping ErrDenied), or err saying why raw is
// not a valid answer.
func decode(kind Kind, raw []byte) (a Answer, deny *broker.Error, err error) {
	var wa wireAnswer
	if err := json.Unmarshal(raw, &wa); err != nil {
		return Answer{}, nil, fmt.Errorf("the answer is not a JSON object of the schema: %w", err)
	}
	if wa.Allow == nil {
		return Answer{}, nil, errors.New(`the answer has no "allow"`)
	}
	if !*wa.Allow {
		return Answer{}, denied(wa.Code, wa.Message), nil
	}
	switch kind {
	case Connect:
		if len(wa.User) > MaxUserBytes {
			return Answer{}, nil, fmt.Errorf(`"user" is longer than %d bytes`, MaxUserBytes)
		}
		a.User = wa.User
		if a.Info, err = checkInfo(wa.Info); err != nil {
			return Answer{}, nil, err
		}
		if a.Channels, err = checkChannels(wa.Channels); err != nil {
			return Answer{}, nil, err
		}
		if a.Expires, err = checkExpires(wa.Expires); err != nil {
			return Answer{}, nil, err
		}
	case Refresh:
		if a.Info, err = checkInfo(wa.Info); err != nil {
			return Answer{}, nil, err
		}
		if a.Expires, err = checkExpires(wa.Expires); err != nil {
			return Answer{}, nil, err
		}
	case Publish:
		if d := bytes.TrimSpace(wa.Data); len(d) > 0 && string(d) != "null" {
			if !json.Valid(d) {
				return Answer{}, nil, errors.New(`"data" is not valid JSON`)
			}
			a.Data = d
		}
	}
	return a, nil, nil
}

// checkInfo checks an answer's info: a JSON object of at most
// auth.MaxInfoBytes; absent or null is none.
func checkInfo(info json.RawMessage) (json.RawMessage, error) {
	info = bytes.TrimSpace(info)
	if len(info) == 0 || string(info) == "null" {
		return nil, nil
	}
	if info[0] != '{' {
		return nil, errors.New(`"info" is not a JSON object`)
	}
	if len(info) > auth.MaxInfoBytes {
		return nil, fmt.Errorf(`"info" is larger than %d bytes`, auth.MaxInfoBytes)
	}
	return info, nil
}

// checkChannels checks an answer's channels: at most auth.MaxChannels
// exact topics; a topic listed twice is kept once.
func checkChannels(channels []string) ([]string, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	if len(channels) > auth.MaxChannels {
		return nil, fmt.Errorf(`"channels" lists more than %d topics`, auth.MaxChannels)
	}
	out := make([]string, 0, len(channels))
	for _, t := range channels {
		if err := broker.ValidateTopic(t); err != nil {
			return nil, fmt.Errorf(`"channels" holds %q, not an exact topic: %w`, t, err)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// checkExpires parses an answer's expires, an RFC 3339 time; absent is
// none.
func checkExpires(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf(`"expires" is not an RFC 3339 time: %w`, err)
	}
	return t, nil
}
