// Package auth is Tidings' authentication and authorization: it verifies
// the JWTs that WebSocket sessions present (HMAC secret, RSA/ECDSA/Ed25519
// public key, or a JWKS URL with key rotation), turns their claims into
// topic permissions, decides whether a subscription pattern or a publish
// topic is covered by them, and reads the HTTP publishers' API keys.
//
// It knows nothing of WebSocket or HTTP serving: transports hand it a token
// and get back Claims, or an error whose text is safe to show the client.
package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
)

// Errors of Verify and New. Verify's errors are broker.ErrUnauthorized
// errors, whose text is safe to send to the client; they wrap
// ErrInvalidToken (and ErrTokenExpired when that is the reason).
var (
	// ErrNoToken: no token was presented.
	ErrNoToken = broker.NewError(broker.ErrUnauthorized, "token is missing")
	// ErrInvalidToken: the token was refused.
	ErrInvalidToken = broker.NewError(broker.ErrUnauthorized, "token is not valid")
	// ErrTokenExpired: the token's exp has passed (beyond the leeway).
	ErrTokenExpired = broker.NewError(broker.ErrUnauthorized, "token expired")
	// ErrTokenRevoked: the token, or its user's tokens, were revoked.
	ErrTokenRevoked = broker.NewError(broker.ErrUnauthorized, "token revoked")
	// ErrConfig: the verifier's configuration cannot work.
	ErrConfig = errors.New("auth: bad configuration")
)

// MinHMACKeyLen is the shortest HMAC secret New accepts, in bytes: 256
// bits, as RFC 7518 §3.2 requires for HS256.
const MinHMACKeyLen = 32

// Config selects the key that signs session tokens and the checks applied
// to them. Exactly one of HMACKey, PublicKeyPEM and JWKSURL must be set.
// The zero value of each other field means its default.
type Config struct {
	// HMACKey is a shared secret of at least MinHMACKeyLen bytes; tokens
	// must be signed with HS256, HS384 or HS512.
	HMACKey []byte
	// PublicKeyPEM is one PEM-encoded RSA, ECDSA or Ed25519 public key
	// (PKIX "PUBLIC KEY", PKCS #1 "RSA PUBLIC KEY", or a "CERTIFICATE").
	// RSA keys accept RS256/384/512 and PS256/384/512, ECDSA keys the one
	// ES algorithm of their curve, Ed25519 keys EdDSA.
	PublicKeyPEM []byte
	// JWKSURL is an http(s) URL serving a JSON Web Key Set. Keys are
	// fetched on first use, refetched every JWKSRefresh, and at once (at
	// most every JWKSMinInterval) when a token names an unknown kid.
	JWKSURL string
	// Audience, when set, must be one of the token's aud values. Empty
	// (the default): aud is not checked.
	Audience string
	// Issuer, when set, must be the token's iss. Empty (the default): iss
	// is not checked.
	Issuer string
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero or
	// negative means 5s: some leeway is always allowed.
	Leeway time.Duration
	// JWKSRefresh is how often the key set is refetched. Zero or negative
	// means 1h.
	JWKSRefresh time.Duration
	// JWKSMinInterval is the least time between two fetches caused by
	// unknown kids, so that made-up kids cannot make the broker hammer the
	// key server. Zero or negative means 10s.
	JWKSMinInterval time.Duration
	// HTTPClient fetches the key set. Nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Logger receives key set fetch failures. Nil means discard.
	Logger *slog.Logger
}

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	Leeway:          5 * time.Second,
	JWKSRefresh:     time.Hour,
	JWKSMinInterval: 10 * time.Second,
	HTTPClient:      &http.Client{Timeout: 10 * time.Second},
	Now:             time.Now,
	Logger:          defaults.Discard(),
}

func (c Config) withDefaults() Config { return defaults.Fill(c, configDefaults) }

// Claims is what a verified token grants.
type Claims struct {
	// Subject is the token's sub: the user id, shown in logs.
	Subject string
	// TokenID is the token's jti, "" without one: what a revocation of
	// one token names.
	TokenID string
	// Expires is the token's exp. The session ends at Expires plus the
	// verifier's leeway unless it is refreshed.
	Expires time.Time
	// Permissions are the token's subscribe and publish patterns; the
	// topics of its channels claim may be subscribed to as well.
	Permissions Permissions
	// Info is the token's info claim, a JSON object of at most
	// MaxInfoBytes that travels with the session (presence, join and
	// leave); nil without one.
	Info json.RawMessage
	// Channels are the exact topics of the token's channels claim: the
	// session is subscribed to them when it opens (at most MaxChannels).
	Channels []string
}

// Bounds of the identity claims.
const (
	// MaxInfoBytes bounds the info claim.
	MaxInfoBytes = 1024
	// MaxChannels bounds the channels claim.
	MaxChannels = 100
)

// tokenClaims is the JSON payload of a session token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Subscribe []string        `json:"subscribe"`
	Publish   []string        `json:"publish"`
	Info      json.RawMessage `json:"info"`
	Channels  []string        `json:"channels"`
}

// Verifier checks session tokens. It is safe for concurrent use.
type Verifier struct {
	cfg     Config
	parser  *jwt.Parser
	keyfunc func(ctx context.Context, t *jwt.Token) (any, error)
	jwks    *jwks // nil unless JWKSURL is set
	// revoked, when set, reports whether valid claims were revoked.
	revoked atomic.Pointer[func(*Claims) bool]
}

// CheckRevocation makes Verify refuse, with ErrTokenRevoked, the tokens
// for which revoked reports true (a revoked user or jti). It is safe to
// call while Verify runs.
func (v *Verifier) CheckRevocation(revoked func(*Claims) bool) {
	v.revoked.Store(&revoked)
}

// New returns a verifier for cfg. It fails, with an error wrapping
// ErrConfig, when no key or more than one is set, when the HMAC key is
// shorter than MinHMACKeyLen, when the PEM holds no usable public key, or
// when the JWKS URL is not an http(s) URL. It does not fetch the key set.
func New(cfg Config) (*Verifier, error) {
	cfg = cfg.withDefaults()
	set := 0
	for _, b := range []bool{len(cfg.HMACKey) > 0, len(cfg.PublicKeyPEM) > 0, cfg.JWKSURL != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%w: set exactly one of an HMAC key, a public key and a JWKS URL", ErrConfig)
	}
	v := &Verifier{cfg: cfg}
	var methods []string
	switch {
	case len(cfg.HMACKey) > 0:
		if len(cfg.HMACKey) < MinHMACKeyLen {
			return nil, fmt.Errorf("%w: the HMAC key has %d bytes, at least %d are needed", ErrConfig, len(cfg.HMACKey), MinHMACKeyLen)
		}
		key := append([]byte(nil), cfg.HMACKey...)
		methods = []string{"HS256", "HS384", "HS512"}
		v.keyfunc = func(context.Context, *jwt.Token) (any, error) { return key, nil }
	case len(cfg.PublicKeyPEM) > 0:
		key, err := ParsePublicKeyPEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		methods = algorithmsFor(key)
		v.keyfunc = func(context.Context, *jwt.Token) (any, error) { return key, nil }
	default:
		if !strings.HasPrefix(cfg.JWKSURL, "https://") && !strings.HasPrefix(cfg.JWKSURL, "http://") {
			return nil, fmt.Errorf("%w: the JWKS URL %q is not an http(s) URL", ErrConfig, cfg.JWKSURL)
		}
		v.jwks = newJWKS(cfg)
		methods = asymmetricAlgorithms
		v.keyfunc = v.jwks.keyfunc
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Leeway is the clock skew the verifier allows.
func (v *Verifier) Leeway() time.Duration { return v.cfg.Leeway }

// Refresh fetches the key set now when the verifier uses a JWKS URL, and
// does nothing otherwise. Callers use it to warm the cache at start.
func (v *Verifier) Refresh(ctx context.Context) error {
	if v.jwks == nil {
		return nil
	}
	return v.jwks.fetch(ctx)
}

// Verify checks token and returns what it grants. The error wraps
// ErrNoToken for an empty token, else ErrInvalidToken (and
// ErrTokenExpired when it has expired).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) { return v.keyfunc(ctx, t) })
	if err != nil {
		return nil, refusal(err)
	}
	info, channels, err := identity(tc)
	if err != nil {
		return nil, invalid(err.Error(), err)
	}
	perms, err := NewPermissions(append(slices.Clip(tc.Subscribe), channels...), tc.Publish)
	if err != nil {
		return nil, invalid(err.Error(), err)
	}
	c := &Claims{Subject: tc.Subject, TokenID: tc.ID, Expires: tc.ExpiresAt.Time, Permissions: perms, Info: info, Channels: channels}
	if f := v.revoked.Load(); f != nil && (*f)(c) {
		return nil, invalid("token revoked", ErrTokenRevoked)
	}
	return c, nil
}

// identity checks the token's info and channels claims: info a JSON
// object of at most MaxInfoBytes (null counts as none), channels at most
// MaxChannels exact topics, each once.
func identity(tc tokenClaims) (json.RawMessage, []string, error) {
	var info json.RawMessage
	if trimmed := bytes.TrimSpace(tc.Info); len(trimmed) > 0 && string(trimmed) != "null" {
		if trimmed[0] != '{' {
			return nil, nil, errors.New("token info claim is not a JSON object")
		}
		if len(trimmed) > MaxInfoBytes {
			return nil, nil, fmt.Errorf("token info claim is larger than %d bytes", MaxInfoBytes)
		}
		info = bytes.Clone(trimmed)
	}
	if len(tc.Channels) > MaxChannels {
		return nil, nil, fmt.Errorf("token channels claim lists more than %d topics", MaxChannels)
	}
	channels := make([]string, 0, len(tc.Channels))
	for _, t := range tc.Channels {
		if err := broker.ValidateTopic(t); err != nil {
			return nil, nil, fmt.Errorf("token channels claim holds an invalid topic: %w", err)
		}
		if !slices.Contains(channels, t) {
			channels = append(channels, t)
		}
	}
	return info, channels, nil
}

// invalid is a refused token: its text is the reason, safe for the
// client; it matches ErrInvalidToken and the underlying causes.
func invalid(reason string, causes ...error) error {
	return broker.WrapErrorf(broker.ErrUnauthorized, errors.Join(append([]error{ErrInvalidToken}, causes...)...), "%s", reason)
}

// refusal turns a jwt parse error into a tokenError with a short reason.
// The reasons name the failed check, never the key.
func refusal(err error) error {
	var ke *keyError
	switch {
	case errors.As(err, &ke):
		return invalid(ke.reason, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid("token expired", ErrTokenExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("token is not valid yet (nbf)", err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("token is issued in the future (iat)", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		var missing []string
		for _, c := range []string{"exp", "aud", "iss"} {
			if strings.Contains(err.Error(), c+" claim is required") {
				missing = append(missing, c)
			}
		}
		return invalid("token has no "+strings.Join(missing, ", ")+" claim", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid("token audience is not accepted", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid("token issuer is not accepted", err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("token is malformed", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("token signature or algorithm is not valid", err)
	default:
		return invalid("token is not valid", err)
	}
}

// keyError is a failure to find the key that may verify a token.
type keyError struct{ reason string }

func (e *keyError) Error() string { return e.reason }

// Permissions are the topic patterns a session may subscribe and publish
// to, as the token's subscribe and publish claims list them. A subscription
// is allowed only if every topic it can match is matched by the subscribe
// patterns; a publish only if its topic is matched by a publish pattern.
// The zero value allows nothing.
type Permissions struct {
	subscribe, publish []string
}

var _ broker.Permissions = Permissions{}

// NewPermissions returns the permissions of the given patterns. Each must
// be a valid topic or pattern (broker.ValidatePattern).
func NewPermissions(subscribe, publish []string) (Permissions, error) {
	for _, list := range []struct {
		claim    string
		patterns []string
	}{{"subscribe", subscribe}, {"publish", publish}} {
		for _, p := range list.patterns {
			if _, err := broker.ValidatePattern(p); err != nil {
				return Permissions{}, fmt.Errorf("claim %s holds an invalid pattern: %w", list.claim, err)
			}
		}
	}
	return Permissions{subscribe: clone(subscribe), publish: clone(publish)}, nil
}

func clone(s []string) []string { return append([]string(nil), s...) }

// Anonymous is what a session without a token may do (PROTOCOL.md):
// subscribe to anything, and publish only when publish is true (the
// client connects from a loopback address).
func Anonymous(publish bool) Permissions {
	p := Permissions{subscribe: []string{">"}}
	if publish {
		p.publish = []string{">"}
	}
	return p
}

// Subscribe returns the subscribe patterns.
func (p Permissions) Subscribe() []string { return clone(p.subscribe) }

// Publish returns the publish patterns.
func (p Permissions) Publish() []string { return clone(p.publish) }

// AllowSubscribe reports whether every topic pattern can match is matched
// by a subscribe pattern.
func (p Permissions) AllowSubscribe(pattern string) bool { return Covers(p.subscribe, pattern) }

// AllowPublish reports whether topic is matched by a publish pattern.
func (p Permissions) AllowPublish(topic string) bool { return MatchAny(p.publish, topic) }

// MatchAny reports whether topic, an exact topic, is matched by one of
// patterns.
func MatchAny(patterns []string, topic string) bool {
	if broker.ValidateTopic(topic) != nil {
		return false
	}
	for _, p := range patterns {
		if broker.Match(p, topic) {
			return true
		}
	}
	return false
}
