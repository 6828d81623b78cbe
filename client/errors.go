package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/tidings-io/tidings/protocol"
)

// Sentinels for errors.Is: errors.Is(err, ErrForbidden) is true for every
// *Error whose Code is protocol.CodeForbidden, whatever its status and
// message.
var (
	ErrBadRequest   = &Error{Code: protocol.CodeBadRequest}
	ErrUnauthorized = &Error{Code: protocol.CodeUnauthorized}
	ErrForbidden    = &Error{Code: protocol.CodeForbidden}
	ErrNotFound     = &Error{Code: protocol.CodeNotFound}
	ErrRateLimited  = &Error{Code: protocol.CodeRateLimited}
	ErrTooLarge     = &Error{Code: protocol.CodeTooLarge}
	ErrUnavailable  = &Error{Code: protocol.CodeUnavailable}
	ErrInternal     = &Error{Code: protocol.CodeInternal}
)

// ErrClosed is Subscription.Err after Subscription.Close.
var ErrClosed = errors.New("tidings: subscription closed")

// Error is an error answered by the broker: over HTTP, the JSON body
// {"error": {"code", "message"}} with its status; over WebSocket, an
// `error` frame (Status 0) or a refused upgrade (Status set). The client
// also reports a broker it cannot reach as protocol.CodeUnavailable with
// Status 0, wrapping the network error (see Unwrap), and data it cannot
// encode as protocol.CodeBadRequest with Status 0.
type Error struct {
	// Code is one of the protocol.Code constants (the codes of
	// docs/PROTOCOL.md, documented in package protocol).
	Code string
	// Message is the broker's text (fixed texts: no secret ever appears).
	Message string
	// Status is the HTTP status; 0 when the error did not come with one.
	Status int
	// RetryAfter is the wait the broker asked for with Retry-After (on
	// 429 and 503), zero when it named none.
	RetryAfter time.Duration

	err error // the cause, for Unwrap
}

// Error returns "tidings: <code> (<status>): <message>".
func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("tidings: %s (%d): %s", e.Code, e.Status, e.Message)
	}
	return fmt.Sprintf("tidings: %s: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, target) true when target is an *Error with the
// same Code (the sentinels ErrForbidden, ErrUnavailable, …).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap returns the cause of an error the client made itself (a network
// error behind protocol.CodeUnavailable, say), nil for the broker's
// answers.
func (e *Error) Unwrap() error { return e.err }

// IsCode reports whether err is, or wraps, an *Error with code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// CloseError is how a WebSocket session ended for good: the broker closed
// it with a code from 4500 to 4999 (POST /v1/disconnect asking the
// client not to come back). Subscription.Err returns it.
type CloseError struct {
	// Code is the close code, Reason its reason.
	Code   int
	Reason string
}

// Error returns "tidings: closed by the broker: <code> <reason>".
func (e *CloseError) Error() string {
	return fmt.Sprintf("tidings: closed by the broker: %d %q", e.Code, e.Reason)
}
