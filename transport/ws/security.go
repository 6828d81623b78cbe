package ws

import (
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/transport/admit"
)

// TokenVerifier checks session tokens; *auth.Verifier implements it.
type TokenVerifier = session.TokenVerifier

// ValidOrigin checks an -allowed-origins entry (see admit.ValidOrigin).
func ValidOrigin(entry string) error { return admit.ValidOrigin(entry) }
