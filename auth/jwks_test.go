package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/internal/testkit"
)

// jwkOf returns the public JWK of a signing key.
func jwkOf(t testing.TB, kid, alg string, key any) map[string]any {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	m := map[string]any{"kid": kid, "use": "sig"}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		raw, err := k.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		size := (len(raw) - 1) / 2
		m["kty"], m["crv"] = "EC", k.Curve.Params().Name
		m["x"], m["y"] = b64(raw[1:1+size]), b64(raw[1+size:])
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(k.Public().(ed25519.PublicKey))
	default:
		t.Fatalf("jwkOf: %T", key)
	}
	return m
}

// keyServer serves a JWKS that a test can replace, and counts fetches.
type keyServer struct {
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
	srv     *httptest.Server
}

func newKeyServer(t testing.TB, keys ...map[string]any) *keyServer {
	t.Helper()
	ks := &keyServer{}
	ks.set(t, keys...)
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.mu.Lock()
		body, status := ks.body, ks.status
		ks.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) set(t testing.TB, keys ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	ks.mu.Lock()
	ks.body, ks.status = body, http.StatusOK
	ks.mu.Unlock()
}

func (ks *keyServer) fail() {
	ks.mu.Lock()
	ks.body, ks.status = []byte("down"), http.StatusServiceUnavailable
	ks.mu.Unlock()
}

func TestJWKSKeyTypes(t *testing.T) {
	t.Parallel()
	ks := newKeyServer(t,
		jwkOf(t, "rsa", "", rsaKey),
		jwkOf(t, "ec", "ES256", ecKey),
		jwkOf(t, "ed", "EdDSA", edKey),
		map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},          // symmetric: skipped
		map[string]any{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB"}, // not for signatures
	)
	v := newVerifier(t, auth.Config{JWKSURL: ks.srv.URL})
	ctx := context.Background()
	for _, tc := range []struct {
		kid    string
		method jwt.SigningMethod
		key    any
		ok     bool
	}{
		{"rsa", jwt.SigningMethodRS256, rsaKey, true},
		{"rsa", jwt.SigningMethodPS384, rsaKey, true},
		{"ec", jwt.SigningMethodES256, ecKey, true},
		{"ed", jwt.SigningMethodEdDSA, edKey, true},
		{"rsa", jwt.SigningMethodES256, ecKey, false},             // algorithm of another family than the kid's key
		{"ec", jwt.SigningMethodES384, ec384Key, false},           // the JWK pins ES256
		{"hmac", jwt.SigningMethodHS256, []byte("secret"), false}, // no HMAC through a JWKS
		{"enc", jwt.SigningMethodRS256, rsaKey, false},
		{"", jwt.SigningMethodRS256, rsaKey, false}, // no kid, several keys
	} {
		_, err := v.Verify(ctx, sign(t, tc.method, tc.key, tc.kid, valid()))
		if (err == nil) != tc.ok {
			t.Errorf("kid %q %s: err %v, want accepted %v", tc.kid, tc.method.Alg(), err, tc.ok)
		}
	}
}

func TestJWKSSingleKeyWithoutKid(t *testing.T) {
	t.Parallel()
	ks := newKeyServer(t, jwkOf(t, "", "", ecKey))
	v := newVerifier(t, auth.Config{JWKSURL: ks.srv.URL})
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, ecKey, "", valid())); err != nil {
		t.Fatalf("a token without kid against a one-key set: %v", err)
	}
}

// TestJWKSRotation: the key server rotates from key 1 to key 2. A token
// with the new kid makes the verifier refetch at once; tokens of the
// retired key are then refused; made-up kids cannot make it refetch more
// often than JWKSMinInterval.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := rsaKey, mustEC(ecKey.Curve)
	ks := newKeyServer(t, jwkOf(t, "k1", "RS256", k1))
	clk := testkit.NewClock(fixedNow)
	v := newVerifier(t, auth.Config{JWKSURL: ks.srv.URL, Now: clk.Now, JWKSMinInterval: 10 * time.Second, JWKSRefresh: time.Hour})
	ctx := context.Background()
	verify := func(method jwt.SigningMethod, key any, kid string) error {
		c := valid()
		c.Exp = clk.Now().Add(time.Hour)
		_, err := v.Verify(ctx, sign(t, method, key, kid, c))
		return err
	}
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := verify(jwt.SigningMethodRS256, k1, "k1"); err != nil {
		t.Fatalf("key 1 before rotation: %v", err)
	}
	if n := ks.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (the key is cached)", n)
	}

	ks.set(t, jwkOf(t, "k2", "ES256", k2))
	clk.Add(11 * time.Second)
	if err := verify(jwt.SigningMethodES256, k2, "k2"); err != nil {
		t.Fatalf("key 2 after rotation: %v", err)
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one for the unknown kid)", n)
	}
	if err := verify(jwt.SigningMethodRS256, k1, "k1"); !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), "kid") {
		t.Fatalf("retired key 1: %v, want refused for its unknown kid", err)
	}

	// Unknown kids within JWKSMinInterval of the last fetch fetch nothing.
	for i := 0; i < 20; i++ {
		if err := verify(jwt.SigningMethodES256, k2, "made-up"); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after 20 made-up kids, want still 2", n)
	}
	clk.Add(11 * time.Second)
	_ = verify(jwt.SigningMethodES256, k2, "made-up")
	if n := ks.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3 once JWKSMinInterval has passed", n)
	}

	// A set older than JWKSRefresh is refetched in passing; when the key
	// server is down the keys in hand stay in use.
	ks.fail()
	clk.Add(2 * time.Hour)
	if err := verify(jwt.SigningMethodES256, k2, "k2"); err != nil {
		t.Fatalf("key 2 while the key server is down: %v", err)
	}
	if n := ks.fetches.Load(); n != 4 {
		t.Fatalf("%d fetches, want 4 (a stale set is refetched)", n)
	}
}

func TestJWKSUnreachableRefusesWithAClearReason(t *testing.T) {
	t.Parallel()
	ks := newKeyServer(t)
	ks.fail()
	v := newVerifier(t, auth.Config{JWKSURL: ks.srv.URL})
	if err := v.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh of a failing key server returned nil")
	}
	_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, "k1", valid()))
	if !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), "cannot be fetched") {
		t.Fatalf("Verify: %v, want refused because the key set cannot be fetched", err)
	}
}

// slowKeyServer serves a JWKS only when the test releases it, and counts
// the requests it received.
type slowKeyServer struct {
	arrived chan struct{} // one value per request, when it arrives
	release chan struct{} // closed to let every request be answered
	fetches atomic.Int64
	srv     *httptest.Server
}

func newSlowKeyServer(t testing.TB, keys ...map[string]any) *slowKeyServer {
	t.Helper()
	body, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	ks := &slowKeyServer{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.arrived <- struct{}{}
		select {
		case <-ks.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(ks.srv.Close)
	// Runs before srv.Close, which waits for the handlers.
	t.Cleanup(ks.open)
	return ks
}

// open lets every request, present and future, be answered.
func (ks *slowKeyServer) open() {
	select {
	case <-ks.release:
	default:
		close(ks.release)
	}
}

// TestJWKSFetchOutlivesTheCallerThatStartedIt: the first token with an
// unknown kid starts a fetch; its caller hangs up while the key server is
// slow. The fetch goes on: it neither fails nor counts against
// JWKSMinInterval, and a second caller gets the key from that same fetch.
func TestJWKSFetchOutlivesTheCallerThatStartedIt(t *testing.T) {
	t.Parallel()
	ks := newSlowKeyServer(t, jwkOf(t, "k1", "RS256", rsaKey))
	v := newVerifier(t, auth.Config{JWKSURL: ks.srv.URL, JWKSMinInterval: time.Hour})
	tok := sign(t, jwt.SigningMethodRS256, rsaKey, "k1", valid())

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, tok)
		first <- err
	}()
	<-ks.arrived // the fetch is under way
	cancel()
	if err := <-first; err == nil {
		t.Fatal("the first caller was answered although the key server has not answered and its context is done")
	}

	second := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), tok)
		second <- err
	}()
	ks.open()
	if err := <-second; err != nil {
		t.Fatalf("second caller: %v, want the key of the fetch the first caller started", err)
	}
	if n := ks.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

// TestJWKSConcurrentCallersShareOneFetch: callers that need the key set
// while it is being fetched wait for that fetch; each may leave when its
// own context is done.
func TestJWKSConcurrentCallersShareOneFetch(t *testing.T) {
	t.Parallel()
	ks := newSlowKeyServer(t, jwkOf(t, "k1", "RS256", rsaKey))
	v := newVerifier(t, auth.Config{JWKSURL: ks.srv.URL, JWKSMinInterval: time.Nanosecond})
	tok := sign(t, jwt.SigningMethodRS256, rsaKey, "k1", valid())
	const callers = 20
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		go func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	<-ks.arrived
	// A caller whose context is done leaves at once, fetch or not.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, tok); err == nil {
		t.Error("a caller with a cancelled context was answered before the key server")
	}
	ks.open()
	for i := 0; i < callers; i++ {
		if err := <-errs; err != nil {
			t.Errorf("caller: %v", err)
		}
	}
	if n := ks.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for %d concurrent callers, want 1", n, callers)
	}
}
