package ws

import (
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
)

// TokenVerifier checks session tokens; *auth.Verifier implements it.
type TokenVerifier = session.TokenVerifier

// Refusal reasons of upgrades, as counted in Stats.Refused and the
// metrics: the door's (package admit).
const (
	// RefusedOrigin: upgrade refused with 403, Origin not allowed.
	RefusedOrigin = admit.RefusedOrigin
	// RefusedToken: upgrade refused with 401, token missing or not valid.
	RefusedToken = admit.RefusedToken
	// RefusedTokenRevoked: upgrade refused with 401, the token was
	// revoked.
	RefusedTokenRevoked = admit.RefusedTokenRevoked
	// RefusedMaxSessions: upgrade refused with 503, the node is full.
	RefusedMaxSessions = admit.RefusedMaxSessions
	// RefusedIPRate: upgrade refused with 429, the address opens sessions
	// too fast.
	RefusedIPRate = admit.RefusedIPRate
	// RefusedIPConns: upgrade refused with 429, the address holds too many
	// sessions.
	RefusedIPConns = admit.RefusedIPConns
)

// ValidOrigin checks an -allowed-origins entry (see admit.ValidOrigin).
func ValidOrigin(entry string) error { return admit.ValidOrigin(entry) }
