package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// asymmetricAlgorithms are every algorithm a public key may verify; a
// given key accepts only those of its family (algorithmsFor).
var asymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// ParsePublicKeyPEM returns the first public key of data: a PKIX "PUBLIC
// KEY", a PKCS #1 "RSA PUBLIC KEY" or a "CERTIFICATE". Supported keys are
// RSA (2048 bits or more), ECDSA on P-256, P-384 or P-521, and Ed25519.
// Private keys are refused: the broker needs only the public half.
func ParsePublicKeyPEM(data []byte) (any, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM public key found (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return nil, fmt.Errorf("the PEM holds a %s: give the public key only", block.Type)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the PEM %s: %w", block.Type, err)
		}
		if err := checkKey(key); err != nil {
			return nil, err
		}
		return key, nil
	}
}

// checkKey refuses key types and sizes the verifier does not accept.
func checkKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits: at least %d are needed", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if ecdsaAlgorithm(k.Curve) == "" {
			return fmt.Errorf("ECDSA curve %s is not supported (P-256, P-384 or P-521)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key type %T is not supported (RSA, ECDSA or Ed25519)", key)
	}
	return nil
}

// algorithmsFor returns the signature algorithms key may verify. Pinning
// the algorithm to the key's family is what stops a token from choosing
// "none", or HMAC keyed with the public key.
func algorithmsFor(key any) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		return []string{ecdsaAlgorithm(k.Curve)}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// ecdsaAlgorithm is the one JWS algorithm of curve (RFC 7518 §3.4).
func ecdsaAlgorithm(curve elliptic.Curve) string {
	switch curve {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// allows reports whether alg is one of the algorithms key may verify.
func allows(key any, alg string) bool {
	for _, a := range algorithmsFor(key) {
		if a == alg {
			return true
		}
	}
	return false
}
