// Package testcert writes TLS certificates for tests: a self-signed
// server certificate (Write), or a certificate authority that issues
// server and client certificates (NewCA).
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Write writes a fresh self-signed server certificate with the given
// serial, valid for 127.0.0.1 and localhost from an hour ago to an hour
// from now, and its P-256 key, PEM-encoded (PKCS #8 for the key), to
// tls.crt and tls.key in dir. Each file is written under a temporary name
// and renamed into place, as certificate tools do, the key first. Write
// returns the files' paths and a pool that trusts the certificate; it
// fails the test on any error.
func Write(t testing.TB, dir string, serial int64) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "tidings test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert, der := create(t, tmpl, tmpl, key, key)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, der, key)
	return certFile, keyFile, pool
}

// CA is a certificate authority for tests. Its certificate is valid from
// an hour ago to a day from now.
type CA struct {
	// CertFile is the CA's certificate, PEM-encoded: what a server or a
	// client is told to trust.
	CertFile string
	// Pool trusts the CA.
	Pool *x509.CertPool

	t      testing.TB
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewCA creates a certificate authority with a P-256 key and writes its
// certificate to ca.crt in dir. It fails the test on any error.
func NewCA(t testing.TB, dir string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tidings test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	cert, der := create(t, tmpl, tmpl, key, key)
	ca := &CA{CertFile: filepath.Join(dir, "ca.crt"), Pool: x509.NewCertPool(), t: t, dir: dir, cert: cert, key: key}
	ca.Pool.AddCert(cert)
	ca.serial.Store(1)
	writeFile(t, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Issue writes a certificate the CA signs, for name (its common name), and
// its P-256 key to name.crt and name.key in the CA's directory, and
// returns their paths. The certificate is valid for 127.0.0.1, ::1 and
// localhost, for server and client authentication alike (a Redis server
// also presents its certificate when it connects to another), from an
// hour ago to a day from now.
func (ca *CA) Issue(name string) (certFile, keyFile string) {
	ca.t.Helper()
	key := newKey(ca.t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	_, der := create(ca.t, tmpl, ca.cert, key, ca.key)
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePair(ca.t, certFile, keyFile, der, key)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// create signs tmpl with the parent's key and returns the certificate and
// its DER encoding.
func create(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, der
}

// writePair writes key (PKCS #8) then the certificate.
func writePair(t testing.TB, certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, "PRIVATE KEY", keyDER)
	writeFile(t, certFile, "CERTIFICATE", der)
}

// writeFile writes one PEM block under a temporary name and renames it
// into place.
func writeFile(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
