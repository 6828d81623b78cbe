package broker

import "errors"

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
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrSessionClosed):
		return CodeUnavailable
	default:
		return CodeInternal
	}
}
