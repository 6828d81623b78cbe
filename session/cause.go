package session

import "slices"

// Cause is why a session ended. Each carries its close code (the
// PROTOCOL.md close-code table), the reason the client is told, and the
// label of tidings_sessions_closed_total{reason}: one value from the
// cause to the wire, the metric and the log, so that no label is
// recovered from free text.
type Cause uint8

// The causes. A transport sends Code and Reason where it can (a WebSocket
// close frame); the Label is the metric's.
const (
	// CauseNone: the session has not ended.
	CauseNone Cause = iota
	// CauseClient: the client ended the session (on a WebSocket, with a
	// close frame: its code is the session's, 1005 when it had none).
	CauseClient
	// CauseDropped: the connection ended with no close (1006, not sent).
	CauseDropped
	// CauseTimeout: the client was silent for two heartbeats (1006, not
	// sent).
	CauseTimeout
	// CauseShutdown: graceful shutdown (1001).
	CauseShutdown
	// CauseSlowConsumer: the outbound queue overflowed (1008).
	CauseSlowConsumer
	// CauseTokenExpired: the session's token expired (1008).
	CauseTokenExpired
	// CauseRateLimited: commands over the rate limit, repeatedly (1008).
	CauseRateLimited
	// CauseProtocolError: the client broke the wire protocol (1002).
	CauseProtocolError
	// CauseUnsupportedData: a binary frame (1003).
	CauseUnsupportedData
	// CauseInvalidPayload: invalid UTF-8 (1007).
	CauseInvalidPayload
	// CauseNotObject: a message that is not a JSON object (1007).
	CauseNotObject
	// CauseTooBig: an inbound message over the limit (1009).
	CauseTooBig
	// CauseInternal: a fault in the session (1011).
	CauseInternal
	// CauseDisconnected: the server API disconnected the session (its
	// code, 4000–4999, default 4000, and reason replace these).
	CauseDisconnected
	// CauseRevoked: the session's token, or its user's tokens, were
	// revoked (1008).
	CauseRevoked

	causeCount
)

// causeInfo is what a Cause carries.
type causeInfo struct {
	code   uint16
	reason string
	label  string
}

// causes is indexed by Cause.
var causes = [causeCount]causeInfo{
	CauseNone:            {0, "", "other"},
	CauseClient:          {1000, "", "client"},
	CauseDropped:         {1006, "", "dropped"},
	CauseTimeout:         {1006, "", "timeout"},
	CauseShutdown:        {1001, "server shutting down", "shutdown"},
	CauseSlowConsumer:    {1008, "slow consumer", "slow_consumer"},
	CauseTokenExpired:    {1008, "token expired", "token_expired"},
	CauseRateLimited:     {1008, "rate limit exceeded", "rate_limited"},
	CauseProtocolError:   {1002, "protocol error", "protocol_error"},
	CauseUnsupportedData: {1003, "binary frames are not supported", "unsupported_data"},
	CauseInvalidPayload:  {1007, "invalid UTF-8", "invalid_payload"},
	CauseNotObject:       {1007, "frame is not a JSON object", "invalid_payload"},
	CauseTooBig:          {1009, "message too big", "message_too_big"},
	CauseInternal:        {1011, "internal error", "internal_error"},
	CauseDisconnected:    {4000, "disconnected", "disconnected"},
	CauseRevoked:         {1008, "token revoked", "token_revoked"},
}

func (c Cause) info() causeInfo {
	if c >= causeCount {
		return causes[CauseNone]
	}
	return causes[c]
}

// Code is the close code the session ends with: for CauseClient the
// client's own code replaces it; 1006 is never sent.
func (c Cause) Code() uint16 { return c.info().code }

// Reason is the close reason the client is told, unless the close names a
// more precise one (a protocol error's detail).
func (c Cause) Reason() string { return c.info().reason }

// Label is the cause in tidings_sessions_closed_total{reason}: a small
// fixed set, so that a client's free-text close reason never becomes a
// label.
func (c Cause) Label() string { return c.info().label }

// String returns the label.
func (c Cause) String() string { return c.Label() }

// Labels lists the causes' labels, each once, for documentation and
// tests.
func Labels() []string {
	out := make([]string, 0, causeCount)
	for c := Cause(0); c < causeCount; c++ {
		if !slices.Contains(out, c.Label()) {
			out = append(out, c.Label())
		}
	}
	return out
}
