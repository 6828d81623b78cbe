package broker

import (
	"errors"
	"fmt"
	"log/slog"
)

// Protocol error codes, as carried by `error` frames and HTTP error bodies.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeRateLimited  = "rate_limited"
	CodeTooLarge     = "too_large"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

// Error is what a client is told of a failure, the same over every
// transport: a protocol code and a message. Its text is the message, with
// no package prefix and no internal detail; what failed underneath (a
// store's error) is kept for errors.Is, errors.As and the log (LogValue).
//
// The package's sentinel errors are *Error values; an error made by
// NewError or WrapError from one of them matches it with errors.Is.
type Error struct {
	// Code is the protocol code (CodeBadRequest, …).
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

// ErrBadRequest is the kind of a request that is not valid, for errors of
// other packages (a command that cannot be decoded).
var ErrBadRequest = &Error{Code: CodeBadRequest, Message: "bad request"}

// errInternal is what a client is told of an error that is no *Error.
var errInternal = &Error{Code: CodeInternal, Message: "internal error"}

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
