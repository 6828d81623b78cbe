package hooks

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidings-io/tidings/auth"
)

// Kind names a hook.
type Kind uint8

// The hooks, in the order of a session's life.
const (
	// Connect asks whether a client may open a session, and may name its
	// user, info, channels and expiry.
	Connect Kind = iota + 1
	// Subscribe asks whether a session may subscribe to a topic.
	Subscribe
	// Publish asks whether a session may publish a message, and may
	// replace its data.
	Publish
	// Refresh asks whether a session may go on past its expiry, and may
	// give it a new one.
	Refresh
)

// numKinds is the number of hooks; Kind k is at index k-1 of per-hook
// arrays.
const numKinds = 4

var kindNames = [numKinds]string{"connect", "subscribe", "publish", "refresh"}

// String returns the hook's name as requests carry it in "hook":
// "connect", "subscribe", "publish" or "refresh".
func (k Kind) String() string {
	if !k.valid() {
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
	return kindNames[k-1]
}

func (k Kind) valid() bool { return k >= Connect && k <= Refresh }

// Request is the JSON body of a hook request. Fields that do not apply
// to a hook, or that the session does not have, are left empty and
// absent from the JSON. Call sets Hook and Node.
type Request struct {
	// Hook is the hook's name (Kind.String). Set by Call.
	Hook string `json:"hook"`
	// Session is the session's id.
	Session string `json:"session,omitempty"`
	// Node is the name of the node that calls (Config.Node). Set by Call.
	Node string `json:"node,omitempty"`
	// Remote is the client's address, as the transport resolved it
	// (behind trusted proxies, the address they name).
	Remote string `json:"remote,omitempty"`
	// User is the session's user: the token's sub, or the user the
	// connect hook named. Empty for an anonymous session.
	User string `json:"user,omitempty"`
	// Info is the session's info, a JSON object.
	Info json.RawMessage `json:"info,omitempty"`
	// Claims are the claims of the session's verified token, if it has
	// one.
	Claims *Claims `json:"claims,omitempty"`
	// Headers are the client's upgrade request headers named in
	// Config.ForwardHeaders, by canonical name (Forwarded).
	Headers map[string]string `json:"headers,omitempty"`
	// Cookies are the client's upgrade request cookies named in
	// Config.ForwardCookies, by name (Forwarded).
	Cookies map[string]string `json:"cookies,omitempty"`
	// Topic is the topic or pattern of a subscribe, the exact topic of a
	// publish.
	Topic string `json:"topic,omitempty"`
	// Data is the data of a publish, as the client sent it.
	Data json.RawMessage `json:"data,omitempty"`
}

// Claims are what a session's verified token grants, under the names of
// the token's own claims.
type Claims struct {
	// Subject is the token's sub.
	Subject string `json:"sub,omitempty"`
	// TokenID is the token's jti.
	TokenID string `json:"jti,omitempty"`
	// Expires is the token's exp, in seconds since the Unix epoch.
	Expires int64 `json:"exp,omitempty"`
	// Subscribe are the patterns the token lets the session subscribe to
	// (its channels included).
	Subscribe []string `json:"subscribe,omitempty"`
	// Publish are the patterns the token lets the session publish to.
	Publish []string `json:"publish,omitempty"`
	// Info is the token's info claim, a JSON object.
	Info json.RawMessage `json:"info,omitempty"`
	// Channels are the topics of the token's channels claim.
	Channels []string `json:"channels,omitempty"`
}

// ClaimsOf returns the request's form of c; nil when c is nil.
func ClaimsOf(c *auth.Claims) *Claims {
	if c == nil {
		return nil
	}
	out := &Claims{
		Subject:   c.Subject,
		TokenID:   c.TokenID,
		Subscribe: c.Permissions.Subscribe(),
		Publish:   c.Permissions.Publish(),
		Info:      c.Info,
		Channels:  c.Channels,
	}
	if !c.Expires.IsZero() {
		out.Expires = c.Expires.Unix()
	}
	return out
}

// MaxForwardedValue bounds a forwarded header's or cookie's value, in
// bytes: a longer one is not forwarded.
const MaxForwardedValue = 8 << 10

// Forwarded returns the headers and cookies of r, a client's upgrade
// request, that cfg names in ForwardHeaders and ForwardCookies, for the
// session to keep and send with each hook request. Nothing else is
// forwarded: Cookie and Authorization only when ForwardHeaders names
// them.
//
// Header names match whatever their case, and are keyed by their
// canonical form ("x-tenant" gives "X-Tenant"); a header sent several
// times is joined with ", " ("; " for Cookie). Host is r.Host. Cookie
// names match exactly; a cookie sent several times gives its first
// value. An empty value, or one longer than MaxForwardedValue, is left
// out. Either map is nil when it would be empty.
func Forwarded(r *http.Request, cfg Config) (headers, cookies map[string]string) {
	for _, name := range cfg.ForwardHeaders {
		key := http.CanonicalHeaderKey(name)
		var v string
		if key == "Host" {
			v = r.Host
		} else {
			vals := r.Header.Values(key)
			if len(vals) == 0 {
				continue
			}
			sep := ", "
			if key == "Cookie" {
				sep = "; "
			}
			v = strings.Join(vals, sep)
		}
		if v == "" || len(v) > MaxForwardedValue {
			continue
		}
		if headers == nil {
			headers = make(map[string]string, len(cfg.ForwardHeaders))
		}
		headers[key] = v
	}
	for _, name := range cfg.ForwardCookies {
		c, err := r.Cookie(name)
		if err != nil || c.Value == "" || len(c.Value) > MaxForwardedValue {
			continue
		}
		if cookies == nil {
			cookies = make(map[string]string, len(cfg.ForwardCookies))
		}
		cookies[name] = c.Value
	}
	return headers, cookies
}

// Forwarded is Forwarded(r, the Config h was made with).
func (h *Hooks) Forwarded(r *http.Request) (headers, cookies map[string]string) {
	return Forwarded(r, h.cfg)
}
