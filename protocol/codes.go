// Package protocol holds the wire's vocabulary shared by the broker, the
// Go client and the tests: the error codes of docs/PROTOCOL.md, the
// WebSocket subprotocol, the frame the server sends and the node figures
// of GET /v1/info.
//
// It imports only the standard library, so that every side of the wire
// can use it without pulling in the others.
package protocol

// The error codes of the protocol, as carried by `error` frames and HTTP
// error bodies ({"error": {"code", "message"}}).
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
	// CodeRateLimited: over a rate; a Retry-After header says how long to
	// wait when the broker knows.
	CodeRateLimited = "rate_limited"
	// CodeTooLarge: a body, batch or subscription count over its limit.
	CodeTooLarge = "too_large"
	// CodeUnavailable: the broker is shutting down or its store cannot be
	// reached; the Go client also reports a broker it cannot reach at all
	// with it. Retrying later (with the same idempotency key) is safe.
	CodeUnavailable = "unavailable"
	// CodeInternal: an unexpected fault in the broker.
	CodeInternal = "internal"
	// CodeMethodNotAllowed is the HTTP API's answer (405) to a request
	// with the wrong method.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeUnsupportedMediaType is the HTTP API's answer (415) to a body
	// that is not application/json.
	CodeUnsupportedMediaType = "unsupported_media_type"
)

// Subprotocol is the WebSocket subprotocol of the wire: clients offer it,
// and the broker selects it.
const Subprotocol = "pubsub.v1"
