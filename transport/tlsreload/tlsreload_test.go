package tlsreload_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testcert"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/transport/tlsreload"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serialOf(r *tlsreload.Reloader) int64 { return r.Certificate().Leaf.SerialNumber.Int64() }

// newReloader writes a pair of serial 1 to a new directory and returns
// a Reloader of it, the directory and the key file.
func newReloader(t *testing.T) (r *tlsreload.Reloader, dir, keyFile string) {
	t.Helper()
	dir = t.TempDir()
	certFile, keyFile, _ := testcert.Write(t, dir, 1)
	r, err := tlsreload.New(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, dir, keyFile
}

func TestReloadReplacesThePairAndKeepsItOnFailure(t *testing.T) {
	t.Parallel()
	r, dir, keyFile := newReloader(t)
	if got, _ := r.GetCertificate(&tls.ClientHelloInfo{}); got.Leaf.SerialNumber.Int64() != 1 {
		t.Fatalf("serial %d, want 1", got.Leaf.SerialNumber.Int64())
	}
	testcert.Write(t, dir, 2)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if serialOf(r) != 2 {
		t.Fatalf("after Reload serial %d, want 2", serialOf(r))
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); !errors.Is(err, tlsreload.ErrLoad) {
		t.Fatalf("Reload of a broken key: %v, want ErrLoad", err)
	}
	if serialOf(r) != 2 {
		t.Fatalf("a failed reload replaced the certificate: serial %d", serialOf(r))
	}
}

func TestNewRefusesMissingOrMismatchedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, _, _ := testcert.Write(t, dir, 1)
	other := t.TempDir()
	_, otherKey, _ := testcert.Write(t, other, 2)
	for _, tc := range []struct{ cert, key string }{
		{filepath.Join(dir, "missing.pem"), otherKey},
		{certFile, otherKey}, // not the certificate's key
	} {
		if _, err := tlsreload.New(tc.cert, tc.key, nil); !errors.Is(err, tlsreload.ErrLoad) {
			t.Errorf("New(%s, %s): %v, want ErrLoad", tc.cert, tc.key, err)
		}
	}
}

func TestWatchReloadsWhenTheFilesChange(t *testing.T) {
	t.Parallel()
	r, dir, _ := newReloader(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Watch(ctx, 10*time.Millisecond) })
	defer func() { cancel(); wg.Wait() }()
	testcert.Write(t, dir, 7)
	testkit.Eventually(t, 5*time.Second, func() error {
		if s := serialOf(r); s != 7 {
			return fmt.Errorf("serial still %d after the files changed, want 7", s)
		}
		return nil
	})
	tlsCfg := r.TLSConfig()
	if tlsCfg.MinVersion != tls.VersionTLS12 || len(tlsCfg.NextProtos) != 1 || tlsCfg.NextProtos[0] != "http/1.1" {
		t.Errorf("TLSConfig: min %x, protos %v", tlsCfg.MinVersion, tlsCfg.NextProtos)
	}
}
