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

// jwks is a cached JSON Web Key Set (RFC 7517) behind a URL.
type jwks struct {
	cfg Config

	// fetchMu serializes fetches and guards lastAttempt.
	fetchMu     sync.Mutex
	lastAttempt time.Time

	// mu guards keys and fetched.
	mu      sync.RWMutex
	keys    map[string]jwk // by kid ("" for a key without one)
	fetched time.Time      // when keys were last fetched successfully
}

// jwk is one usable verification key of the set.
type jwk struct {
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	alg string // the key's "alg", when the set names one
}

func newJWKS(cfg Config) *jwks { return &jwks{cfg: cfg} }

// keyfunc finds the key for t by its kid, refetching the set when the kid
// is unknown (at most every JWKSMinInterval) or the set is older than
// JWKSRefresh, and checks that t's algorithm suits that key.
func (j *jwks) keyfunc(ctx context.Context, t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	k, ok, stale := j.lookup(kid)
	switch {
	case !ok:
		j.fetchMu.Lock()
		if k, ok, _ = j.lookup(kid); !ok {
			if j.cfg.Now().Sub(j.lastAttempt) >= j.cfg.JWKSMinInterval {
				if err := j.fetchLocked(ctx); err != nil {
					j.fetchMu.Unlock()
					return nil, &keyError{"the token's key set cannot be fetched"}
				}
				k, ok, _ = j.lookup(kid)
			}
		}
		j.fetchMu.Unlock()
		if !ok {
			j.mu.RLock()
			never := j.keys == nil
			j.mu.RUnlock()
			if never {
				return nil, &keyError{"the token's key set cannot be fetched"}
			}
			if kid == "" {
				return nil, &keyError{"token has no kid and the key set does not hold exactly one key"}
			}
			return nil, &keyError{"token key id (kid) is unknown"}
		}
	case stale:
		// Refresh in passing; meanwhile the key in hand is still good.
		if j.fetchMu.TryLock() {
			if _, _, stale = j.lookup(kid); stale {
				_ = j.fetchLocked(ctx)
			}
			j.fetchMu.Unlock()
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

// fetch fetches the key set now.
func (j *jwks) fetch(ctx context.Context) error {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	return j.fetchLocked(ctx)
}

// fetchLocked fetches and replaces the key set; on failure the previous
// set stays. The caller holds fetchMu.
func (j *jwks) fetchLocked(ctx context.Context) error {
	j.lastAttempt = j.cfg.Now()
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
