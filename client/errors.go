package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The error codes of the protocol (docs/PROTOCOL.md), carried by Error.Code.
const (
	// CodeBadRequest: invalid JSON, a missing field, an invalid topic, a
	// pattern as a publish topic, a bad idempotency key.
	CodeBadRequest = "bad_request"
	// CodeUnauthorized: a missing or invalid API key or token.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the key or token may not do this (publish to the
	// topic, call the server API, subscribe to the pattern).
	CodeForbidden = "forbidden"
	// CodeNotFound: an unknown route, or nothing to act on.
	CodeNotFound = "not_found"
	// CodeRateLimited: over a rate; Error.RetryAfter says how long to wait
	// when the broker said.
	CodeRateLimited = "rate_limited"
	// CodeTooLarge: a body, batch or subscription count over its limit.
	CodeTooLarge = "too_large"
	// CodeUnavailable: the broker is shutting down or its store cannot be
	// reached; also what the client reports when the broker cannot be
	// reached at all. Retrying later (with the same idempotency key) is
	// safe.
	CodeUnavailable = "unavailable"
	// CodeInternal: an unexpected fault in the broker.
	CodeInternal = "internal"
	// CodeMethodNotAllowed and CodeUnsupportedMediaType are the HTTP API's
	// own codes (405, 415); this client never causes them.
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeUnsupportedMediaType = "unsupported_media_type"
)

// Sentinels for errors.Is: errors.Is(err, ErrForbidden) is true for every
// *Error whose Code is CodeForbidden, whatever its status and message.
var (
	ErrBadRequest   = &Error{Code: CodeBadRequest}
	ErrUnauthorized = &Error{Code: CodeUnauthorized}
	ErrForbidden    = &Error{Code: CodeForbidden}
	ErrNotFound     = &Error{Code: CodeNotFound}
	ErrRateLimited  = &Error{Code: CodeRateLimited}
	ErrTooLarge     = &Error{Code: CodeTooLarge}
	ErrUnavailable  = &Error{Code: CodeUnavailable}
	ErrInternal     = &Error{Code: CodeInternal}
)

// ErrClosed is Subscription.Err after Subscription.Close.
var ErrClosed = errors.New("tidings: subscription closed")

// Error is an error answered by the broker: over HTTP, the JSON body
// {"error": {"code", "message"}} with its status; over WebSocket, an
// `error` frame (Status 0) or a refused upgrade (Status set). The client
// also reports a broker it cannot reach as CodeUnavailable with Status 0,
// wrapping the network error (see Unwrap), and data it cannot encode as
// CodeBadRequest with Status 0.
type Error struct {
	// Code is one of the Code constants.
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
// error behind CodeUnavailable, say), nil for the broker's answers.
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

// codeOfStatus is the protocol code of an HTTP status, for answers that
// carry no error body of the broker's (a proxy's 502, say).
func codeOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedMediaType
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return CodeUnavailable
	}
	return CodeInternal
}
