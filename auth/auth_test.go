package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var hmacKey = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

// fixedNow is the verifiers' clock in these tests.
var fixedNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func now() time.Time { return fixedNow }

// claims is a token payload; zero fields are left out.
type claims struct {
	Sub       string
	Exp, Nbf  time.Time
	Iat       time.Time
	Aud, Iss  string
	Subscribe []string
	Publish   []string
	Extra     map[string]any
}

func (c claims) mapClaims() jwt.MapClaims {
	m := jwt.MapClaims{}
	if c.Sub != "" {
		m["sub"] = c.Sub
	}
	if !c.Exp.IsZero() {
		m["exp"] = c.Exp.Unix()
	}
	if !c.Nbf.IsZero() {
		m["nbf"] = c.Nbf.Unix()
	}
	if !c.Iat.IsZero() {
		m["iat"] = c.Iat.Unix()
	}
	if c.Aud != "" {
		m["aud"] = c.Aud
	}
	if c.Iss != "" {
		m["iss"] = c.Iss
	}
	if c.Subscribe != nil {
		m["subscribe"] = c.Subscribe
	}
	if c.Publish != nil {
		m["publish"] = c.Publish
	}
	for k, v := range c.Extra {
		m[k] = v
	}
	return m
}

// sign signs c with method and key, setting kid when not empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, c claims) string {
	t.Helper()
	return testkit.SignToken(t, method, key, kid, c.mapClaims())
}

func valid() claims {
	return claims{Sub: "user-1", Exp: fixedNow.Add(time.Hour), Subscribe: []string{"prices.>"}, Publish: []string{"chat.room1"}}
}

func newVerifier(t testing.TB, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = now
	}
	v, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func pemOf(t testing.TB, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der)
}

// Keys are generated once: RSA generation is slow under -race.
var (
	rsaKey   = mustRSA(2048)
	ecKey    = mustEC(elliptic.P256())
	ec384Key = mustEC(elliptic.P384())
	edPub    ed25519.PublicKey
	edKey    ed25519.PrivateKey
)

func init() {
	var err error
	if edPub, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
}

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func TestNewRefusesUnusableConfigurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  auth.Config
		want string
	}{
		{"no key", auth.Config{}, "exactly one"},
		{"two keys", auth.Config{HMACKey: hmacKey, JWKSURL: "https://idp.example/jwks"}, "exactly one"},
		{"HMAC key of 31 bytes", auth.Config{HMACKey: hmacKey[:31]}, "31 bytes"},
		{"PEM without a key", auth.Config{PublicKeyPEM: []byte("not pem")}, "no PEM public key"},
		{"private key PEM", auth.Config{PublicKeyPEM: pemOf(t, "PRIVATE KEY", []byte{1})}, "public key only"},
		{"small RSA key", auth.Config{PublicKeyPEM: pkixPEM(t, &mustRSA(1024).PublicKey)}, "1024 bits"},
		{"JWKS URL not http", auth.Config{JWKSURL: "file:///etc/jwks.json"}, "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.New(tt.cfg)
			if !errors.Is(err, auth.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestVerifyHMACToken(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, auth.Config{HMACKey: hmacKey})
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		c, err := v.Verify(context.Background(), sign(t, m, hmacKey, "", valid()))
		if err != nil {
			t.Fatalf("%s: %v", m.Alg(), err)
		}
		if c.Subject != "user-1" || !c.Expires.Equal(fixedNow.Add(time.Hour)) {
			t.Fatalf("%s: claims %+v", m.Alg(), c)
		}
		if !c.Permissions.AllowSubscribe("prices.eur.usd") || c.Permissions.AllowSubscribe("news.x") {
			t.Fatalf("%s: subscribe permissions %v", m.Alg(), c.Permissions.Subscribe())
		}
		if !c.Permissions.AllowPublish("chat.room1") || c.Permissions.AllowPublish("chat.room2") {
			t.Fatalf("%s: publish permissions %v", m.Alg(), c.Permissions.Publish())
		}
	}
}

// TestVerifyRefusals: each rule of a token's validity, and the text the
// client is told.
func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, auth.Config{HMACKey: hmacKey, Audience: "tidings", Issuer: "https://idp.example", Leeway: 5 * time.Second})
	good := valid()
	good.Aud, good.Iss = "tidings", "https://idp.example"
	with := func(f func(*claims)) claims { c := good; f(&c); return c }
	hs := func(c claims) string { return sign(t, jwt.SigningMethodHS256, hmacKey, "", c) }
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, good.mapClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		reason  string
		expired bool
	}{
		{"expired beyond the leeway", hs(with(func(c *claims) { c.Exp = fixedNow.Add(-6 * time.Second) })), "token expired", true},
		{"no exp", hs(with(func(c *claims) { c.Exp = time.Time{} })), "no exp claim", false},
		{"nbf beyond the leeway", hs(with(func(c *claims) { c.Nbf = fixedNow.Add(6 * time.Second) })), "not valid yet", false},
		{"iat in the future", hs(with(func(c *claims) { c.Iat = fixedNow.Add(time.Minute) })), "issued in the future", false},
		{"other audience", hs(with(func(c *claims) { c.Aud = "other" })), "audience", false},
		{"no audience", hs(with(func(c *claims) { c.Aud = "" })), "no aud claim", false},
		{"no issuer", hs(with(func(c *claims) { c.Iss = "" })), "no iss claim", false},
		{"other issuer", hs(with(func(c *claims) { c.Iss = "https://evil.example" })), "issuer", false},
		{"wrong HMAC key", sign(t, jwt.SigningMethodHS256, []byte("another-key-another-key-another-k"), "", good), "signature", false},
		{"alg none", noneTok, "signature or algorithm", false},
		{"RS256 against an HMAC key", sign(t, jwt.SigningMethodRS256, rsaKey, "", good), "signature or algorithm", false},
		{"invalid subscribe pattern", hs(with(func(c *claims) { c.Subscribe = []string{"prices.>.x"} })), "claim subscribe", false},
		{"invalid publish pattern", hs(with(func(c *claims) { c.Publish = []string{"a..b"} })), "claim publish", false},
		{"subscribe not a list", hs(with(func(c *claims) { c.Subscribe = nil; c.Extra = map[string]any{"subscribe": "prices.>"} })), "malformed", false},
		{"malformed", "abc.def", "malformed", false},
		{"garbage", "not a token at all", "malformed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(context.Background(), tt.token)
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify: %v, want ErrInvalidToken", err)
			}
			if got := strings.TrimPrefix(err.Error(), "auth: "); !strings.Contains(got, tt.reason) {
				t.Errorf("reason %q, want it to mention %q", got, tt.reason)
			}
			if errors.Is(err, auth.ErrTokenExpired) != tt.expired {
				t.Errorf("errors.Is(ErrTokenExpired) = %v, want %v", !tt.expired, tt.expired)
			}
		})
	}
	if _, err := v.Verify(context.Background(), ""); !errors.Is(err, auth.ErrNoToken) {
		t.Errorf("empty token: %v, want ErrNoToken", err)
	}
}

func TestLeewayAllowsSmallClockSkew(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, auth.Config{HMACKey: hmacKey, Leeway: 5 * time.Second})
	c := valid()
	c.Exp = fixedNow.Add(-4 * time.Second) // expired, within the leeway
	c.Nbf = fixedNow.Add(4 * time.Second)  // not yet valid, within the leeway
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, hmacKey, "", c)); err != nil {
		t.Fatalf("a token within the leeway: %v", err)
	}
	if v.Leeway() != 5*time.Second {
		t.Errorf("Leeway() = %v", v.Leeway())
	}
}

// TestPublicKeysPinTheAlgorithmToTheKeyFamily: a public key accepts only
// the algorithms of its family, and never HMAC keyed with the public key
// itself (the classic algorithm confusion).
func TestPublicKeysPinTheAlgorithmToTheKeyFamily(t *testing.T) {
	t.Parallel()
	rsaPEM := pkixPEM(t, &rsaKey.PublicKey)
	rsaPKCS1 := pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jwt"}, NotBefore: fixedNow, NotAfter: fixedNow.Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		pem    []byte
		accept map[string]any // alg -> signing key
		refuse map[string]any
	}{
		{"RSA PKIX", rsaPEM,
			map[string]any{"RS256": rsaKey, "RS512": rsaKey, "PS256": rsaKey},
			map[string]any{"HS256": rsaPEM, "ES256": ecKey, "EdDSA": edKey}},
		{"RSA PKCS #1", rsaPKCS1, map[string]any{"RS384": rsaKey, "PS512": rsaKey}, map[string]any{"HS256": rsaPKCS1}},
		{"ECDSA P-256", pkixPEM(t, &ecKey.PublicKey),
			map[string]any{"ES256": ecKey},
			map[string]any{"ES384": ec384Key, "RS256": rsaKey, "HS256": pkixPEM(t, &ecKey.PublicKey)}},
		{"ECDSA P-256 in a certificate", pemOf(t, "CERTIFICATE", certDER), map[string]any{"ES256": ecKey}, map[string]any{"RS256": rsaKey}},
		{"ECDSA P-384", pkixPEM(t, &ec384Key.PublicKey), map[string]any{"ES384": ec384Key}, map[string]any{"ES256": ecKey}},
		{"Ed25519", pkixPEM(t, edPub), map[string]any{"EdDSA": edKey}, map[string]any{"ES256": ecKey, "HS512": pkixPEM(t, edPub)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, auth.Config{PublicKeyPEM: tt.pem})
			for alg, key := range tt.accept {
				if _, err := v.Verify(context.Background(), sign(t, jwt.GetSigningMethod(alg), key, "", valid())); err != nil {
					t.Errorf("%s: %v, want accepted", alg, err)
				}
			}
			for alg, key := range tt.refuse {
				if b, ok := key.([]byte); ok {
					key = b // HMAC keyed with the PEM bytes of the public key
				}
				_, err := v.Verify(context.Background(), sign(t, jwt.GetSigningMethod(alg), key, "", valid()))
				if !errors.Is(err, auth.ErrInvalidToken) {
					t.Errorf("%s: %v, want refused", alg, err)
				}
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	p, err := auth.NewPermissions([]string{"prices.>", "chat.*"}, []string{"chat.room1", "orders.*.new"})
	if err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string]bool{
		"prices.eur": true, "prices.eur.usd": true, "prices.*": true, "prices.>": true, "prices.*.usd": true,
		"chat.a": true, "chat.*": true,
		"news.x": false, ">": false, "*": false, "prices": false, "chat.>": false, "chat.a.b": false, "*.eur": false,
		"bad..pattern": false,
	} {
		if got := p.AllowSubscribe(pattern); got != want {
			t.Errorf("AllowSubscribe(%q) = %v, want %v", pattern, got, want)
		}
	}
	for topic, want := range map[string]bool{
		"chat.room1": true, "orders.eu.new": true,
		"chat.room2": false, "orders.eu.old": false, "orders.*.new": false, "prices.eur": false, "": false,
	} {
		if got := p.AllowPublish(topic); got != want {
			t.Errorf("AllowPublish(%q) = %v, want %v", topic, got, want)
		}
	}
	var none auth.Permissions
	if none.AllowSubscribe("a") || none.AllowPublish("a") {
		t.Error("the zero Permissions allow something")
	}
	anon, lo := auth.Anonymous(false), auth.Anonymous(true)
	if !anon.AllowSubscribe(">") || !anon.AllowSubscribe("a.b") || anon.AllowPublish("a.b") {
		t.Error("Anonymous(false): want every subscription and no publish")
	}
	if !lo.AllowPublish("a.b") {
		t.Error("Anonymous(true) may not publish")
	}
}

// The identity claims: info, a JSON object of at most MaxInfoBytes, travels
// with the claims as sent; channels are exact topics, each once, that the
// token may subscribe to besides its subscribe patterns. Anything else in
// them refuses the token.
func TestIdentityClaims(t *testing.T) {
	v := newVerifier(t, auth.Config{HMACKey: hmacKey})
	c := valid()
	c.Extra = map[string]any{"info": map[string]any{"name": "Ada"}, "channels": []string{"room.1", "room.2", "room.1"}}
	got, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, hmacKey, "", c))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Info) != `{"name":"Ada"}` || !slices.Equal(got.Channels, []string{"room.1", "room.2"}) {
		t.Fatalf("info %s, channels %v", got.Info, got.Channels)
	}
	if !got.Permissions.AllowSubscribe("room.2") || got.Permissions.AllowSubscribe("room.3") || !got.Permissions.AllowSubscribe("prices.x") {
		t.Error("the channels must be allowed besides the subscribe patterns, and nothing else")
	}
	for name, extra := range map[string]map[string]any{
		"info not an object": {"info": []int{1}},
		"info too large":     {"info": map[string]any{"pad": strings.Repeat("x", auth.MaxInfoBytes)}},
		"a wildcard channel": {"channels": []string{"room.*"}},
		"too many channels": {"channels": func() []string {
			s := make([]string, auth.MaxChannels+1)
			for i := range s {
				s[i] = fmt.Sprintf("c.%d", i)
			}
			return s
		}()},
		"an invalid channel": {"channels": []string{"a..b"}},
	} {
		c := valid()
		c.Extra = extra
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, hmacKey, "", c)); !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), "token") {
			t.Errorf("%s: %v, want a refused token", name, err)
		}
	}
	c = valid()
	c.Extra = map[string]any{"info": nil}
	if got, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, hmacKey, "", c)); err != nil || got.Info != nil || len(got.Channels) != 0 {
		t.Errorf("info null: %v %+v, want no info", err, got)
	}
}
