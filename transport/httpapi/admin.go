package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/limit"
	"github.com/tidings-io/tidings/protocol"
)

// TokenVerifier verifies the JWTs the server API accepts in place of an
// admin API key; *auth.Verifier implements it.
type TokenVerifier interface {
	// Verify returns what token grants, or an error whose text may be
	// shown to the client.
	Verify(ctx context.Context, token string) (*auth.Claims, error)
}

// AdminScope is the scope that lets a JWT call the server API: the token
// carries it as a word of its space-separated `scope` claim
// (`"scope": "admin"`, OAuth 2.0 style), or as `"admin": true`.
const AdminScope = "admin"

// ConsoleHeader marks the requests the admin console sends: a publish
// that carries it is written to the audit log, as a publish with an
// admin API key is.
const ConsoleHeader = "X-Tidings-Console"

// callerLoopback is how the audit log names a loopback client when no
// API key is configured.
const callerLoopback = "loopback"

// admitAdmin checks that r may call the server API with method: the
// address is not blocked for wrong keys, and the request carries an API
// key marked admin or a valid JWT with the admin scope (with no key
// configured, a loopback client needs neither). It returns the caller
// as the audit log names it: "key NAME", "jwt SUB" or "loopback".
// Otherwise it has answered r.
func (a *API) admitAdmin(w http.ResponseWriter, r *http.Request, method string) (string, bool) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+method)
		return "", false
	}
	if tok, ok := a.bearerJWT(r); ok {
		return a.admitJWT(w, r, tok)
	}
	key, ok := a.authenticate(w, r)
	if !ok {
		return "", false
	}
	if key == nil {
		return callerLoopback, true
	}
	if !key.Admin {
		a.refused.Add(limit.ReasonHTTPScope)
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, fmt.Sprintf("API key %s may not call the server API", key.Name))
		return "", false
	}
	return "key " + key.Name, true
}

// bearerJWT returns r's bearer token when it is a JWT (three
// dot-separated parts, no API key's secret) and the node verifies JWTs.
func (a *API) bearerJWT(r *http.Request) (string, bool) {
	if a.cfg.Tokens == nil {
		return "", false
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.Count(tok, ".") != 2 {
		return "", false
	}
	if lookupKey(a.apiKeys(), tok) != nil {
		return "", false
	}
	return tok, true
}

// admitJWT admits a server API call made with the JWT tok: verified by
// the node's verifier (signature, expiry, revocation), with the admin
// scope (403 without it). A refused token counts as a wrong key against
// the client's address.
func (a *API) admitJWT(w http.ResponseWriter, r *http.Request, tok string) (string, bool) {
	client := a.resolver.Resolve(r)
	if wait, blocked := a.keyFails.Blocked(client.Addr); blocked {
		a.refused.Add(limit.ReasonHTTPKeyFailures)
		w.Header().Set("Retry-After", retrySeconds(wait))
		writeError(w, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many wrong API keys from this address; try again later")
		return "", false
	}
	claims, err := a.cfg.Tokens.Verify(r.Context(), tok)
	if err != nil {
		a.keyFails.Fail(client.Addr)
		a.refused.Add(limit.ReasonHTTPKey)
		w.Header().Set("WWW-Authenticate", `Bearer realm="tidings"`)
		writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, broker.ClientError(err).Message)
		return "", false
	}
	if !hasAdminScope(tok) {
		a.refused.Add(limit.ReasonHTTPScope)
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "the token has no admin scope")
		return "", false
	}
	return "jwt " + claims.Subject, true
}

// hasAdminScope reports whether the JWT tok, already verified, carries
// AdminScope in its scope claim or admin: true.
func hasAdminScope(tok string) bool {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var c struct {
		Scope any  `json:"scope"`
		Admin bool `json:"admin"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return false
	}
	if c.Admin {
		return true
	}
	scope, _ := c.Scope.(string)
	for _, s := range strings.Fields(scope) {
		if s == AdminScope {
			return true
		}
	}
	return false
}

// audit logs a server API call that acts (a POST, or a publish from the
// console): its path, the caller, the client's address and what it
// names, and its outcome.
func (a *API) audit(r *http.Request, caller string, err error, attrs ...any) {
	args := []any{"path", r.URL.Path, "caller", caller, "client", a.resolver.Resolve(r).Addr.String()}
	args = append(args, attrs...)
	if err != nil {
		args = append(args, "error", broker.ClientError(err).Code)
	}
	a.cfg.Logger.InfoContext(r.Context(), "server API call", args...)
}

// auditPublish logs a publish to topic made with an admin API key or
// from the console (ConsoleHeader); ok is whether it was published.
func (a *API) auditPublish(r *http.Request, key *apiKey, topic string, ok bool) {
	if r.Header.Get(ConsoleHeader) == "" && (key == nil || !key.Admin) {
		return
	}
	caller := callerLoopback
	if key != nil {
		caller = "key " + key.Name
	}
	args := []any{"path", r.URL.Path, "caller", caller, "client", a.resolver.Resolve(r).Addr.String(), "topic", topic}
	if !ok {
		args = append(args, "error", "refused")
	}
	a.cfg.Logger.InfoContext(r.Context(), "server API call", args...)
}
