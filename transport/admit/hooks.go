package admit

import (
	"errors"
	"net/http"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/limit"
)

// connectHook asks the backend's connect hook about an upgrade from
// client with the token's claims (nil without token authentication). An
// allow returns the claims the session opens with: the token's, with the
// user, info, channels and expiry the backend set in place of theirs
// (an anonymous session's permissions when there was no token). A refusal
// answers 403 with the backend's code and message; a backend that failed
// 503: the request is answered and ok is false.
func (d *Door) connectHook(w http.ResponseWriter, r *http.Request, p *Pass) (_ *auth.Claims, ok bool) {
	client, claims := p.Client, p.Claims
	a, err := d.cfg.Hooks.Call(r.Context(), hooks.Connect, hooks.Request{
		Remote: client.Addr.String(), Claims: hooks.ClaimsOf(claims), Headers: p.headers, Cookies: p.cookies,
		User: subjectOf(claims), Info: infoOf(claims),
	})
	if err != nil {
		e := broker.ClientError(err)
		status := http.StatusForbidden
		if errors.Is(err, broker.ErrUnavailable) {
			status = http.StatusServiceUnavailable
			d.cfg.Logger.Warn("connect hook failed", "remote", client.Addr.String(), "err", err)
		}
		d.refuse(w, limit.ReasonNone, status, e.Code, e.Message, 0)
		return nil, false
	}
	out := &auth.Claims{Permissions: auth.Anonymous(client.Local())}
	if claims != nil {
		c := *claims
		out = &c
	}
	if a.User != "" {
		out.Subject = a.User
	}
	if a.Info != nil {
		out.Info = a.Info
	}
	if a.Channels != nil {
		out.Channels = a.Channels
	}
	if !a.Expires.IsZero() {
		out.Expires = a.Expires
	}
	return out, true
}

func subjectOf(c *auth.Claims) string {
	if c == nil {
		return ""
	}
	return c.Subject
}

func infoOf(c *auth.Claims) []byte {
	if c == nil {
		return nil
	}
	return c.Info
}
