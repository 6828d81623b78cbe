package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxJWKSBody bounds the key set document.
const maxJWKSBody = 1 << 20

// jwksFetchTimeout bounds one fetch of the key set, whatever HTTPClient's
// own timeout: no caller's context bounds it.
const jwksFetchTimeout = 30 * time.Second

// jwks is a cached JSON Web Key Set (RFC 7517) behind a URL.
//
// Fetches run on the set's own context, not on the context of the request
// that needed the key: a client that hangs up must not cancel a fetch that
// other requests wait for, nor make it count as a failure against
// JWKSMinInterval. There is at most one fetch at a time; whoever needs the
// set while it is under way waits for that fetch or for its own context,
// whichever ends first.
type jwks struct {
	cfg Config
	// base is the context fetches run on: the set's lifetime. The
	// Verifier has no Close, so it is never cancelled; each fetch is
	// bounded by jwksFetchTimeout.
	base context.Context

	// fetchMu guards lastAttempt and flight.
	fetchMu     sync.Mutex
	lastAttempt time.Time
	flight      *fetchFlight // the fetch under way, or nil

	// mu guards keys and fetched.
	mu      sync.RWMutex
	keys    map[string]jwk // by kid ("" for a key without one)
	fetched time.Time      // when keys were last fetched successfully
}

// fetchFlight is one fetch of the key set, shared by those who wait for
// it.
type fetchFlight struct {
	done chan struct{} // closed when the fetch has ended
	err  error         // its outcome, set before done is closed
}

// wait waits for the fetch to end, or for ctx; it returns the fetch's
// error, or ctx's. Leaving early does not stop the fetch.
func (f *fetchFlight) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jwk is one usable verification key of the set.
type jwk struct {
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	alg string // the key's "alg", when the set names one
}

func newJWKS(cfg Config) *jwks { return &jwks{cfg: cfg, base: context.Background()} }

// cannotFetch refuses a token whose key needs a key set that could not be
// fetched (or whose caller left before it was).
func cannotFetch() error { return &keyError{"the token's key set cannot be fetched"} }

// keyfunc finds the key for t by its kid, refetching the set when the kid
// is unknown (at most every JWKSMinInterval) or the set is older than
// JWKSRefresh, and checks that t's algorithm suits that key.
func (j *jwks) keyfunc(ctx context.Context, t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	k, ok, stale := j.lookup(kid)
	switch {
	case !ok:
		f, _ := j.begin(false, func() bool { _, ok, _ := j.lookup(kid); return !ok })
		if f != nil {
			if err := f.wait(ctx); err != nil {
				return nil, cannotFetch()
			}
		}
		if k, ok, _ = j.lookup(kid); !ok {
			j.mu.RLock()
			never := j.keys == nil
			j.mu.RUnlock()
			if never {
				return nil, cannotFetch()
			}
			if kid == "" {
				return nil, &keyError{"token has no kid and the key set does not hold exactly one key"}
			}
			return nil, &keyError{"token key id (kid) is unknown"}
		}
	case stale:
		// Refresh in passing; meanwhile the key in hand is still good.
		// The caller that starts the refresh waits for it, others do not.
		f, started := j.begin(false, func() bool { _, _, stale := j.lookup(kid); return stale })
		if started {
			_ = f.wait(ctx)
			if k2, ok2, _ := j.lookup(kid); ok2 {
				k = k2
			} else {
				return nil, &keyError{"token key id (kid) is unknown"}
			}
		}
	}
	alg := t.Method.Alg()
	if !allows(k.key, alg) || (k.alg != "" && k.alg != alg) {
		return nil, &keyError{fmt.Sprintf("token algorithm %s does not suit its key", alg)}
	}
	return k.key, nil
}

// lookup returns the key named kid; a token without a kid gets the set's
// only key. stale reports that the set is due for a refetch.
func (j *jwks) lookup(kid string) (k jwk, ok, stale bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	stale = j.cfg.Now().Sub(j.fetched) >= j.cfg.JWKSRefresh
	if k, ok = j.keys[kid]; ok {
		return k, true, stale
	}
	if kid == "" && len(j.keys) == 1 {
		for _, k = range j.keys {
			return k, true, stale
		}
	}
	return jwk{}, false, stale
}

// fetch fetches the key set now, or joins the fetch under way, and waits
// for it or for ctx.
func (j *jwks) fetch(ctx context.Context) error {
	f, _ := j.begin(true, nil)
	return f.wait(ctx)
}

// begin returns the fetch under way, or starts one and reports so. A new
// fetch starts only when force is set, or when JWKSMinInterval has passed
// since the last attempt and need (if not nil) still holds; otherwise
// begin returns nil.
func (j *jwks) begin(force bool, need func() bool) (f *fetchFlight, started bool) {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	if j.flight != nil {
		return j.flight, false
	}
	if !force && (j.cfg.Now().Sub(j.lastAttempt) < j.cfg.JWKSMinInterval || (need != nil && !need())) {
		return nil, false
	}
	j.lastAttempt = j.cfg.Now()
	f = &fetchFlight{done: make(chan struct{})}
	j.flight = f
	go j.run(f)
	return f, true
}

// run performs fetch f on the set's own context, bounded by
// jwksFetchTimeout, and publishes its outcome.
func (j *jwks) run(f *fetchFlight) {
	ctx, cancel := context.WithTimeout(j.base, jwksFetchTimeout)
	err := j.replace(ctx)
	cancel()
	j.fetchMu.Lock()
	j.flight = nil
	j.fetchMu.Unlock()
	f.err = err
	close(f.done)
}

// replace fetches and replaces the key set; on failure the previous set
// stays.
func (j *jwks) replace(ctx context.Context) error {
	keys, err := j.get(ctx)
	if err != nil {
		j.cfg.Logger.Warn("JWKS fetch failed", "url", j.cfg.JWKSURL, "err", err)
		return err
	}
	j.mu.Lock()
	j.keys, j.fetched = keys, j.cfg.Now()
	j.mu.Unlock()
	return nil
}

func (j *jwks) get(ctx context.Context) (map[string]jwk, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", j.cfg.JWKSURL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBody {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBody)
	}
	return parseJWKS(body)
}

// parseJWKS reads a JSON Web Key Set and returns its usable signature
// verification keys by kid. Keys of other uses ("use" other than "sig"),
// symmetric keys and unsupported types are skipped; a set with no usable
// key is an error.
func parseJWKS(data []byte) (map[string]jwk, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("key set is not valid JSON: %w", err)
	}
	keys := make(map[string]jwk, len(set.Keys))
	var skipped []string
	for i, raw := range set.Keys {
		var w struct {
			Kty, Kid, Use, Alg, Crv string
			N, E, X, Y              string
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		if w.Use != "" && w.Use != "sig" {
			continue
		}
		key, err := parseJWK(w.Kty, w.Crv, w.N, w.E, w.X, w.Y)
		if err == nil {
			err = checkKey(key)
		}
		if err == nil && w.Alg != "" && !allows(key, w.Alg) {
			err = fmt.Errorf("alg %s does not suit a %s key", w.Alg, w.Kty)
		}
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %v", i, w.Kid, err))
			continue
		}
		keys[w.Kid] = jwk{key: key, alg: w.Alg}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key set holds no usable key (%s)", strings.Join(skipped, "; "))
	}
	return keys, nil
}

// parseJWK builds the public key of one JWK.
func parseJWK(kty, crv, n, e, x, y string) (any, error) {
	switch kty {
	case "RSA":
		nb, err1 := b64(n)
		eb, err2 := b64(e)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if len(eb) == 0 || len(eb) > 4 {
			return nil, errors.New("RSA exponent out of range")
		}
		exp := new(big.Int).SetBytes(eb)
		if exp.Int64() < 3 || exp.Bit(0) == 0 {
			return nil, errors.New("RSA exponent out of range")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: int(exp.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("EC curve %q is not supported", crv)
		}
		xb, err1 := b64(x)
		yb, err2 := b64(y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(xb) > size || len(yb) > size {
			return nil, errors.New("EC coordinates too long")
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(xb):], xb)
		copy(point[1+2*size-len(yb):], yb)
		return ecdsa.ParseUncompressedPublicKey(curve, point)
	case "OKP":
		if crv != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %q is not supported", crv)
		}
		xb, err := b64(x)
		if err != nil {
			return nil, err
		}
		if len(xb) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 key of the wrong size")
		}
		return ed25519.PublicKey(xb), nil
	default:
		return nil, fmt.Errorf("key type %q is not supported", kty)
	}
}

// b64 decodes base64url, with or without padding.
func b64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing key parameter")
	}
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
