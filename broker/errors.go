package broker

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/tidings-io/tidings/protocol"
)

// Error is what a client is told of a failure, the same over every
// transport: a protocol code and a message. Its text is the message, with
// no package prefix and no internal detail; what failed underneath (a
// store's error) is kept for errors.Is, errors.As and the log (LogValue).
//
// The package's sentinel errors are *Error values; an error made by
// NewError or WrapError from one of them matches it with errors.Is.
type Error struct {
	// Code is the protocol code (protocol.CodeBadRequest, …).
	Code string
	// Message is the text for the client.
	Message string

	kind  *Error // the sentinel this error is one of; nil for a sentinel
	cause error  // what failed underneath, for errors.Is and the log
}

// Error returns the client's message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel e is one of and its cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

// LogValue logs the message with its cause, which the client is not told.
func (e *Error) LogValue() slog.Value {
	if e.cause == nil {
		return slog.StringValue(e.Message)
	}
	return slog.StringValue(e.Message + ": " + e.cause.Error())
}

// NewError returns an error of kind (a sentinel *Error, with its code)
// whose message is formatted from format and args.
func NewError(kind *Error, format string, args ...any) *Error {
	return &Error{Code: kind.Code, Message: fmt.Sprintf(format, args...), kind: kind}
}

// WrapError returns an error of kind with kind's message, for a failure
// underneath: cause is kept for errors.Is and the log, never shown to the
// client.
func WrapError(kind *Error, cause error) *Error {
	return &Error{Code: kind.Code, Message: kind.Message, kind: kind, cause: cause}
}

// WrapErrorf is WrapError with a message of its own.
func WrapErrorf(kind *Error, cause error, format string, args ...any) *Error {
	return &Error{Code: kind.Code, Message: fmt.Sprintf(format, args...), kind: kind, cause: cause}
}

// The broker's sentinel errors, each with its protocol code. Callers
// match them with errors.Is; transports tell a client ClientError(err).
var (
	// ErrBadRequest is the kind of a request that is not valid, for errors
	// of other packages (a command that cannot be decoded).
	ErrBadRequest = &Error{Code: protocol.CodeBadRequest, Message: "bad request"}
	// ErrAlreadySubscribed: the session already holds this subscription.
	ErrAlreadySubscribed = &Error{Code: protocol.CodeBadRequest, Message: "already subscribed"}
	// ErrNotSubscribed: the session holds no such subscription.
	ErrNotSubscribed = &Error{Code: protocol.CodeNotFound, Message: "not subscribed"}
	// ErrSinceOnWildcard: resume positions are kept per exact topic only.
	ErrSinceOnWildcard = &Error{Code: protocol.CodeBadRequest, Message: "since is only valid for exact topics"}
	// ErrNoData: a publication without a data value.
	ErrNoData = &Error{Code: protocol.CodeBadRequest, Message: "data is missing"}
	// ErrEmptyBatch: a publish call with no messages.
	ErrEmptyBatch = &Error{Code: protocol.CodeBadRequest, Message: "no messages to publish"}
	// ErrSessionClosed: the session has ended.
	ErrSessionClosed = &Error{Code: protocol.CodeUnavailable, Message: "session is closed"}
	// ErrUnavailable wraps store failures (the store cannot be reached).
	ErrUnavailable = &Error{Code: protocol.CodeUnavailable, Message: "store unavailable"}
	// ErrPartialBatch: a batch that could not be stored in one atomic step
	// (its topics live on several Redis Cluster slots) was stored only in
	// part. The messages whose Offset is set were stored and relayed; the
	// others were not. Publish's error matches it and ErrUnavailable.
	ErrPartialBatch = &Error{Code: protocol.CodeUnavailable, Message: "the batch was stored in part: retry it with the same idempotency keys"}
	// ErrForbidden: the session's or publisher's permissions do not cover
	// the topic.
	ErrForbidden = &Error{Code: protocol.CodeForbidden, Message: "forbidden"}
	// ErrTooManySubscriptions: the session holds Config.MaxSubscriptions
	// subscriptions already. A quota, not a rate: waiting does not help,
	// unsubscribing does.
	ErrTooManySubscriptions = &Error{Code: protocol.CodeTooLarge, Message: "too many subscriptions"}
	// ErrNodeFull: the node holds as many wildcard pattern nodes as
	// Config.MaxPatternNodes allows.
	ErrNodeFull = &Error{Code: protocol.CodeUnavailable, Message: "the node holds too many wildcard patterns"}
	// ErrRateLimited: the client sends faster than its limit allows.
	ErrRateLimited = &Error{Code: protocol.CodeRateLimited, Message: "rate limited"}
	// ErrUnauthorized: the client's credentials are missing or not valid.
	ErrUnauthorized = &Error{Code: protocol.CodeUnauthorized, Message: "unauthorized"}
)

// errInternal is what a client is told of an error that is no *Error.
var errInternal = &Error{Code: protocol.CodeInternal, Message: "internal error"}

// ClientError returns what a client is told of err: the outermost *Error
// in its chain, or an internal error (whose detail is for the log).
func ClientError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errInternal
}

// inMessage is err for the message at index i of a batch: its message
// says which one.
func inMessage(i int, err error) *Error {
	e := ClientError(err)
	return &Error{Code: e.Code, Message: fmt.Sprintf("message %d: %s", i, e.Message), kind: e.kindOrSelf(), cause: err}
}

// kindOrSelf returns the sentinel e is one of, or e when it is one.
func (e *Error) kindOrSelf() *Error {
	if e.kind != nil {
		return e.kind
	}
	return e
}
