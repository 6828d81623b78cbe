package broker

import (
	"errors"
	"strings"
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

// ErrorCode maps an error returned by the broker to its protocol code. It
// is the one place where broker errors meet the wire.
func ErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrInvalidTopic), errors.Is(err, ErrAlreadySubscribed),
		errors.Is(err, ErrSinceOnWildcard), errors.Is(err, ErrNoData),
		errors.Is(err, ErrEmptyBatch), errors.Is(err, ErrInvalidIdempotencyKey):
		return CodeBadRequest
	case errors.Is(err, ErrNotSubscribed):
		return CodeNotFound
	case errors.Is(err, ErrForbidden):
		return CodeForbidden
	case errors.Is(err, ErrUnauthorized):
		return CodeUnauthorized
	case errors.Is(err, ErrRateLimited):
		return CodeRateLimited
	case errors.Is(err, ErrTooManySubscriptions):
		// A quota, not a rate: waiting does not help, unsubscribing does.
		return CodeTooLarge
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrSessionClosed), errors.Is(err, ErrNodeFull):
		return CodeUnavailable
	default:
		return CodeInternal
	}
}

// ClientMessage is the message a client is told for err, from the
// transports' `error` frames and HTTP error bodies. A store failure gets a
// fixed message: its detail (addresses, driver errors) is for the log,
// which the caller writes. Other errors keep their own text, without the
// package prefix.
func ClientMessage(err error) string {
	switch {
	case errors.Is(err, ErrPartialBatch):
		return "the batch was stored in part: retry it with the same idempotency keys"
	case errors.Is(err, ErrSessionClosed):
		return "session is closed"
	case errors.Is(err, ErrUnavailable):
		return "store unavailable"
	}
	return strings.TrimPrefix(err.Error(), "broker: ")
}
