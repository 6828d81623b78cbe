package redis_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testcert"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/store/storetest"
)

// conformance runs the store conformance suite with stores made from cfg.
func conformance(t *testing.T, cfg redis.Config) {
	t.Helper()
	storetest.Run(t, func(t *testing.T, opts storetest.Options) broker.Store {
		c := cfg
		c.HistorySize, c.HistoryTTL = opts.HistorySize, opts.HistoryTTL
		return newStore(t, c)
	})
}

func TestConformanceRedisPassword(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Password: "s3cret-pass"})
	conformance(t, redis.Config{URL: srv.URL(), Auth: redis.Auth{Password: srv.Password}})
}

// The URL's own password (redis://:pass@host) keeps working.
func TestConformanceRedisPasswordInURL(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Password: "url-pass"})
	conformance(t, redis.Config{URL: "redis://:url-pass@" + srv.Addr() + "/0"})
}

// An ACL user, with the default user turned off: only alice gets in. The
// username comes from the URL, the password from Auth.
func TestConformanceRedisACLUser(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Username: "alice", Password: "secret"})
	conformance(t, redis.Config{URL: srv.URL(), Auth: redis.Auth{Username: "alice", Password: "secret"}})
	t.Run("UsernameInURL", func(t *testing.T) {
		s := newStore(t, redis.Config{URL: "redis://alice@" + srv.Addr() + "/0", Auth: redis.Auth{Password: "secret"}})
		publishOne(t, s)
	})
}

// TLS with the server verified against the test CA (LoadTLS reads it),
// and no client certificate.
func TestConformanceRedisTLS(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{TLS: true, Password: "tls-pass"})
	tc, err := redis.LoadTLS(redis.TLSFiles{CAFile: srv.CA.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, redis.Config{URL: srv.URL(), Auth: redis.Auth{Password: srv.Password, TLS: tc}})
	// TLS turns TLS on for a redis:// URL too, and a server name is
	// checked against the certificate.
	t.Run("RedisSchemeWithServerName", func(t *testing.T) {
		tc, err := redis.LoadTLS(redis.TLSFiles{CAFile: srv.CA.CertFile, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		s := newStore(t, redis.Config{URL: "redis://" + srv.Addr(), Auth: redis.Auth{Password: srv.Password, TLS: tc}})
		publishOne(t, s)
	})
}

// tls-auth-clients yes: the server wants a certificate its CA signed.
func TestConformanceRedisTLSClientCert(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{TLS: true, TLSAuthClients: "yes", Username: "alice", Password: "secret"})
	tc, err := redis.LoadTLS(redis.TLSFiles{CAFile: srv.CA.CertFile, CertFile: srv.ClientCertFile, KeyFile: srv.ClientKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, redis.Config{URL: srv.URL(), Auth: redis.Auth{Username: "alice", Password: "secret", TLS: tc}})
}

// Sentinel that requires a password of its own, in front of a master
// that requires another.
func TestConformanceRedisSentinelPassword(t *testing.T) {
	master := redistest.StartWith(t, redistest.Options{Password: "master-pass"})
	sentinel := redistest.StartSentinelWith(t, master, redistest.SentinelOptions{Password: "sentinel-pass"})
	conformance(t, redis.Config{SentinelMaster: "mymaster", SentinelAddrs: []string{sentinel.Addr()},
		Auth: redis.Auth{Password: "master-pass", SentinelPassword: "sentinel-pass"}})
	t.Run("WrongSentinelPassword", func(t *testing.T) {
		_, err := redis.New(redis.Config{SentinelMaster: "mymaster", SentinelAddrs: []string{sentinel.Addr()},
			Auth: redis.Auth{Password: "master-pass", SentinelPassword: "wrong-sentinel-pass"}})
		checkRefused(t, err, redis.ErrAuth, "wrong-sentinel-pass", sentinel.Addr())
	})
	t.Run("NoSentinelPassword", func(t *testing.T) {
		_, err := redis.New(redis.Config{SentinelMaster: "mymaster", SentinelAddrs: []string{sentinel.Addr()},
			Auth: redis.Auth{Password: "master-pass"}})
		checkRefused(t, err, redis.ErrAuth, "master-pass", sentinel.Addr())
	})
	t.Run("WrongMasterPassword", func(t *testing.T) {
		_, err := redis.New(redis.Config{SentinelMaster: "mymaster", SentinelAddrs: []string{sentinel.Addr()},
			Auth: redis.Auth{Password: "wrong-master-pass", SentinelPassword: "sentinel-pass"}})
		checkRefused(t, err, redis.ErrAuth, "wrong-master-pass", master.Addr())
	})
}

// A cluster whose nodes want an ACL user and speak TLS only, the
// cluster bus included.
func TestConformanceRedisClusterACLAndTLS(t *testing.T) {
	cl := redistest.StartClusterWith(t, redistest.Options{Username: "alice", Password: "secret", TLS: true, TLSAuthClients: "yes"})
	n := cl.Nodes[0]
	tc, err := redis.LoadTLS(redis.TLSFiles{CAFile: n.CA.CertFile, CertFile: n.ClientCertFile, KeyFile: n.ClientKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, redis.Config{ClusterAddrs: cl.Addrs(), Auth: redis.Auth{Username: "alice", Password: "secret", TLS: tc}})
	t.Run("WrongPassword", func(t *testing.T) {
		_, err := redis.New(redis.Config{ClusterAddrs: cl.Addrs(), Auth: redis.Auth{Username: "alice", Password: "wrong", TLS: tc}})
		checkRefused(t, err, redis.ErrAuth, "wrong", cl.Addrs()...)
	})
}

// TestRefusedAtNew: a Redis that refuses the credentials or the
// certificates fails New at once with ErrAuth or ErrTLS, and a text that
// says so without the password or the address.
func TestRefusedAtNew(t *testing.T) {
	pass := redistest.StartWith(t, redistest.Options{Password: "right-pass"})
	acl := redistest.StartWith(t, redistest.Options{Username: "alice", Password: "secret"})
	tlsSrv := redistest.StartWith(t, redistest.Options{TLS: true, TLSAuthClients: "yes"})
	trusted, err := redis.LoadTLS(redis.TLSFiles{CAFile: tlsSrv.CA.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	other := testcert.NewCA(t, t.TempDir())
	untrusted, err := redis.LoadTLS(redis.TLSFiles{CAFile: other.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := other.Issue("stranger")
	strangerCert, err := redis.LoadTLS(redis.TLSFiles{CAFile: tlsSrv.CA.CertFile, CertFile: otherCert, KeyFile: otherKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cfg    redis.Config
		want   error
		secret string
		addr   string
	}{
		{"wrong password", redis.Config{URL: pass.URL(), Auth: redis.Auth{Password: "wrong-pass"}}, redis.ErrAuth, "wrong-pass", pass.Addr()},
		{"wrong password in the URL", redis.Config{URL: "redis://:wrong-url-pass@" + pass.Addr()}, redis.ErrAuth, "wrong-url-pass", pass.Addr()},
		{"no password", redis.Config{URL: pass.URL()}, redis.ErrAuth, "right-pass", pass.Addr()},
		{"wrong ACL user", redis.Config{URL: acl.URL(), Auth: redis.Auth{Username: "mallory", Password: "secret"}}, redis.ErrAuth, "mallory", acl.Addr()},
		{"wrong ACL password", redis.Config{URL: acl.URL(), Auth: redis.Auth{Username: "alice", Password: "guess"}}, redis.ErrAuth, "guess", acl.Addr()},
		{"no user, default off", redis.Config{URL: acl.URL()}, redis.ErrAuth, "secret", acl.Addr()},
		{"untrusted server certificate", redis.Config{URL: tlsSrv.URL(), Auth: redis.Auth{TLS: untrusted}}, redis.ErrTLS, "", tlsSrv.Addr()},
		{"system roots only", redis.Config{URL: tlsSrv.URL()}, redis.ErrTLS, "", tlsSrv.Addr()},
		{"wrong server name", redis.Config{URL: tlsSrv.URL(), Auth: redis.Auth{TLS: withServerName(trusted, "redis.example")}}, redis.ErrTLS, "", tlsSrv.Addr()},
		{"no client certificate", redis.Config{URL: tlsSrv.URL(), Auth: redis.Auth{TLS: trusted}}, redis.ErrTLS, "", tlsSrv.Addr()},
		{"client certificate of another CA", redis.Config{URL: tlsSrv.URL(), Auth: redis.Auth{TLS: strangerCert}}, redis.ErrTLS, "", tlsSrv.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := redis.New(tc.cfg)
			if err == nil {
				_ = s.Close()
			}
			checkRefused(t, err, tc.want, tc.secret, tc.addr)
		})
	}
}

func withServerName(c *tls.Config, name string) *tls.Config {
	c = c.Clone()
	c.ServerName = name
	return c
}

// checkRefused checks that err wraps want and names neither secret nor
// any of addrs (nor their ports).
func checkRefused(t *testing.T, err, want error, secret string, addrs ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("New: %v, want an error wrapping %q", err, want)
	}
	if !strings.HasPrefix(err.Error(), want.Error()) {
		t.Errorf("error %q, want it to start with %q", err, want.Error())
	}
	checkClean(t, "error", err.Error(), secret, addrs...)
	t.Logf("New: %v", err)
}

// checkClean fails when text names secret, an address of addrs or its
// port.
func checkClean(t *testing.T, what, text, secret string, addrs ...string) {
	t.Helper()
	if secret != "" && strings.Contains(text, secret) {
		t.Errorf("%s %q shows the secret %q", what, text, secret)
	}
	for _, a := range addrs {
		port := a[strings.LastIndex(a, ":")+1:]
		if strings.Contains(text, a) || strings.Contains(text, ":"+port) {
			t.Errorf("%s %q shows the address %s", what, text, a)
		}
	}
}

// TestAuthConflicts: a URL's user or password and an explicit one are
// refused together, not silently chosen between; Sentinel credentials
// need Sentinel.
func TestAuthConflicts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  redis.Config
		want string
	}{
		{"password twice", redis.Config{URL: "redis://:in-url@127.0.0.1:1", Auth: redis.Auth{Password: "explicit"}}, "password"},
		{"same password twice", redis.Config{URL: "redis://:same@127.0.0.1:1", Auth: redis.Auth{Password: "same"}}, "password"},
		{"username twice", redis.Config{URL: "redis://bob@127.0.0.1:1", Auth: redis.Auth{Username: "alice"}}, "username"},
		{"sentinel password without sentinel", redis.Config{URL: "redis://127.0.0.1:1", Auth: redis.Auth{SentinelPassword: "sp"}}, "Sentinel"},
		{"sentinel username on a cluster", redis.Config{ClusterAddrs: []string{"127.0.0.1:1"}, Auth: redis.Auth{SentinelUsername: "su"}}, "Sentinel"},
		{"unparsable URL with a password", redis.Config{URL: "redis://u:p%zz-secret@127.0.0.1:x"}, "cannot be parsed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := redis.New(tc.cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("New accepted the configuration")
			}
			if !errors.Is(err, redis.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want ErrConfig naming %q", err, tc.want)
			}
			for _, secret := range []string{"in-url", "explicit", "same", "sp", "secret", "127.0.0.1"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows %q", err, secret)
				}
			}
		})
	}
}

func TestLoadTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, dir)
	certFile, keyFile := ca.Issue("client")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files redis.TLSFiles
		want  string // "" for success, else a substring of the error
	}{
		{"nothing", redis.TLSFiles{}, ""},
		{"CA", redis.TLSFiles{CAFile: ca.CertFile}, ""},
		{"CA and client certificate", redis.TLSFiles{CAFile: ca.CertFile, CertFile: certFile, KeyFile: keyFile}, ""},
		{"missing CA file", redis.TLSFiles{CAFile: filepath.Join(dir, "none.crt")}, "none.crt"},
		{"CA file without a certificate", redis.TLSFiles{CAFile: notPEM}, "no PEM certificate"},
		{"certificate without key", redis.TLSFiles{CertFile: certFile}, "both files or neither"},
		{"key without certificate", redis.TLSFiles{KeyFile: keyFile}, "both files or neither"},
		{"key of another certificate", redis.TLSFiles{CertFile: certFile, KeyFile: ca.CertFile}, "client certificate"},
		{"missing certificate file", redis.TLSFiles{CertFile: filepath.Join(dir, "gone.crt"), KeyFile: keyFile}, "gone.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := redis.LoadTLS(tc.files)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("LoadTLS: %v", err)
			case tc.want == "":
				if c.MinVersion != tls.VersionTLS12 || (tc.files.CAFile != "") != (c.RootCAs != nil) || (tc.files.CertFile != "") != (c.GetClientCertificate != nil) {
					t.Errorf("LoadTLS(%+v) = %+v", tc.files, c)
				}
			case err == nil || !errors.Is(err, redis.ErrConfig) || !strings.Contains(err.Error(), tc.want):
				t.Errorf("LoadTLS: %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
}

// TestTLSClientCertificateRenewed: a client certificate renewed on disk
// is presented by the next connection; a broken pair leaves the previous
// one in use.
func TestTLSClientCertificateRenewed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, dir)
	certFile, keyFile := ca.Issue("client")
	c, err := redis.LoadTLS(redis.TLSFiles{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		t.Helper()
		cert, err := c.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil || cert == nil || cert.Leaf == nil {
			t.Fatalf("GetClientCertificate: %v, %v", cert, err)
		}
		return cert.Leaf.SerialNumber.String()
	}
	first := serial()
	// Issue the same name again: new files with a new serial. The
	// modification time may not move within the file system's
	// granularity, so it is set.
	ca.Issue("client")
	later := time.Now().Add(time.Second)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	second := serial()
	if second == first {
		t.Fatalf("serial %s after renewal, want a new one", second)
	}
	if err := os.WriteFile(keyFile, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != second {
		t.Errorf("serial %s with a broken key file, want the previous %s", got, second)
	}
}

// TestErrorsAndLogsAreRedacted: with Redis gone, what the store says (its
// health, a publish's error, its log, go-redis's log lines) names neither
// Redis's address nor the credentials.
func TestErrorsAndLogsAreRedacted(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Username: "carol", Password: "pa55word-xyz"})
	logs := newLogCapture()
	s := newStore(t, redis.Config{URL: "redis://carol@" + srv.Addr(), Timeout: 300 * time.Millisecond,
		Auth: redis.Auth{Password: "pa55word-xyz"}, Logger: logs.logger()})
	srv.Kill()
	testkit.Eventually(t, 10*time.Second, func() error {
		if s.Healthy() == nil {
			return errors.New("the store still reports healthy with its Redis killed")
		}
		return nil
	})
	health := s.Healthy()
	if !errors.Is(health, redis.ErrNotReady) {
		t.Fatalf("Healthy: %v, want ErrNotReady", health)
	}
	pubErr := s.Publish(context.Background(), []*broker.Message{{ID: "m1", Topic: "redact.t", Data: []byte(`1`), Time: time.Now()}})
	if pubErr == nil {
		t.Fatal("publish to a dead Redis succeeded")
	}
	_, posErr := s.Position(context.Background(), "redact.t")
	for what, text := range map[string]string{"health": health.Error(), "publish error": pubErr.Error(), "position error": posErr.Error()} {
		checkClean(t, what, text, "pa55word-xyz", srv.Addr())
		if strings.Contains(text, "carol") {
			t.Errorf("%s %q names the user", what, text)
		}
	}
	// go-redis logs the dials that fail; they come out as records of the
	// store's logger.
	rec := logs.wait(t, 10*time.Second, func(r record) bool { return r.msg == "go-redis" })
	if rec.level != "WARN" || !strings.Contains(rec.attrs["detail"], "dial") {
		t.Errorf("go-redis record %+v, want a warning about a failed dial", rec)
	}
	for _, r := range logs.all() {
		line := r.msg + " " + strings.Join(r.values(), " ")
		checkClean(t, "log record", line, "pa55word-xyz", srv.Addr())
		if strings.Contains(line, "carol") {
			t.Errorf("log record %q names the user", line)
		}
	}
}

// publishOne publishes a message through s.
func publishOne(t *testing.T, s *redis.Store) {
	t.Helper()
	m := &broker.Message{ID: "one", Topic: "auth.one", Data: []byte(`1`), Time: time.Now()}
	if err := s.Publish(context.Background(), []*broker.Message{m}); err != nil || m.Offset == 0 {
		t.Fatalf("publish: %v (offset %d)", err, m.Offset)
	}
}
