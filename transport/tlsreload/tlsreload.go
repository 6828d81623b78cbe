// Package tlsreload serves a TLS certificate and key from files and
// reloads them when asked (SIGHUP, in the broker) or when the files
// change, so that a renewed certificate is picked up without a restart.
// Handshakes in progress keep the certificate they started with; a pair
// that fails to load leaves the previous one in service.
package tlsreload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrLoad wraps every failure to load the certificate and key.
var ErrLoad = errors.New("tlsreload: cannot load the certificate and key")

// Reloader holds the current certificate. It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	// mu serializes loads and guards stamp.
	mu    sync.Mutex
	stamp string // size and modification time of both files at the last load
}

// New loads the pair of PEM files. It fails, wrapping ErrLoad, when they
// cannot be read or do not form a key pair. log receives reloads and their
// failures (nil: discard).
func New(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if _, err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate returns the certificate in service.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// TLSConfig returns a server configuration that serves the current
// certificate, TLS 1.2 or later, HTTP/1.1 only (a WebSocket upgrade needs
// it).
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: r.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
	}
}

// Reload loads the files now. On failure the previous certificate stays
// in service and the error (wrapping ErrLoad) is returned.
func (r *Reloader) Reload() error {
	_, err := r.load()
	if err != nil {
		r.log.Error("TLS certificate reload failed; the previous one stays in service", "err", err)
		return err
	}
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "not_after", r.Certificate().Leaf.NotAfter)
	return nil
}

// Watch checks the files every interval until ctx is done and reloads
// them when their size or modification time changes. A pair that fails
// to load (a certificate written before its key, say) is tried again at
// the next change.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var tried string // the stamp of the last failed attempt
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, err := stampOf(r.certFile, r.keyFile)
		r.mu.Lock()
		changed := err == nil && stamp != r.stamp && stamp != tried
		r.mu.Unlock()
		if changed && r.Reload() != nil {
			tried = stamp
		}
	}
}

// load reads the pair and puts it in service; it reports whether the
// files had changed since the last successful load.
func (r *Reloader) load() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := stampOf(r.certFile, r.keyFile)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false, fmt.Errorf("%w: %w", ErrLoad, err)
		}
	}
	changed := stamp != r.stamp
	r.stamp = stamp
	r.cert.Store(&cert)
	return changed, nil
}

// stampOf describes the two files' sizes and modification times.
func stampOf(files ...string) (string, error) {
	var s string
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}
