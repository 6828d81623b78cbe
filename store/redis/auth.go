package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Errors of a Redis that refuses the store's settings: no retry fixes
// them. New returns them when Redis refuses at once; later, Healthy
// reports them (wrapped with ErrNotReady).
var (
	// ErrAuth: Redis (or a sentinel) refused the username and password,
	// or asked for them and none were given.
	ErrAuth = errors.New("redis: authentication refused; check the username and password")
	// ErrTLS: the TLS handshake failed on the certificates: the server's
	// is not trusted or not for the name dialled, or the server wants a
	// client certificate that was not given or that it does not trust.
	ErrTLS = errors.New("redis: TLS handshake refused; check the CA, the server name and the client certificate")
)

// Auth is how the store authenticates to Redis and protects its
// connections; Config embeds it. It applies alike to a single Redis
// (URL), to every node of a Cluster and, with Sentinel, to the master and
// replicas; the sentinels take SentinelUsername and SentinelPassword, and
// TLS too.
type Auth struct {
	// Username and Password authenticate to Redis: an ACL user and its
	// password, or the password alone for requirepass (the default user).
	// A URL's own user and password (redis://user:pass@host) count as
	// these; giving one both in the URL and here is refused (ErrConfig)
	// rather than one silently winning. Empty: no authentication.
	Username, Password string
	// TLS, when set, encrypts every connection to Redis and to the
	// sentinels with this client configuration; its ServerName, when
	// empty, is the host each connection dials. It replaces the TLS
	// settings of a rediss:// URL, and turns TLS on for a redis:// one.
	// Nil: TLS only for a rediss:// URL, verified with the system's roots.
	// LoadTLS builds one from PEM files.
	TLS *tls.Config
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (their requirepass, or an ACL user); with SentinelMaster only.
	SentinelUsername, SentinelPassword string
}

// TLSFiles are the PEM files and settings of a TLS client configuration
// for Redis, which LoadTLS reads.
type TLSFiles struct {
	// CAFile holds the certificates that verify the server's. Empty: the
	// system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate (with its chain) and
	// its key, presented to a server that asks for one (tls-auth-clients);
	// both or neither. They are read again when they change, so that the
	// next connection presents a renewed certificate.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry. Empty:
	// the host each connection dials.
	ServerName string
	// InsecureSkipVerify accepts any server certificate: for tests only,
	// since anyone on the path can then read and change the traffic.
	InsecureSkipVerify bool
}

// LoadTLS reads the files f names and returns a client configuration for
// Auth.TLS: TLS 1.2 or later, verifying the server with f.CAFile (or the
// system's roots) and presenting the client certificate when there is
// one. Its errors wrap ErrConfig and name the file at fault.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.InsecureSkipVerify, // documented as for tests only
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS CA file: %v", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: TLS CA file %s: no PEM certificate in it", ErrConfig, f.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case (f.CertFile == "") != (f.KeyFile == ""):
		return nil, fmt.Errorf("%w: a TLS client certificate and its key go together: give both files or neither", ErrConfig)
	case f.CertFile != "":
		kp := &keyPair{certFile: f.CertFile, keyFile: f.KeyFile}
		if err := kp.load(); err != nil {
			return nil, fmt.Errorf("%w: TLS client certificate: %v", ErrConfig, err)
		}
		cfg.GetClientCertificate = kp.get
	}
	return cfg, nil
}

// keyPair is a client certificate read from files, read again when they
// change; a pair that fails to load leaves the previous one in use.
type keyPair struct {
	certFile, keyFile string

	mu    sync.Mutex
	stamp string // size and modification time of both files at the last load
	cert  *tls.Certificate
}

// get is tls.Config.GetClientCertificate.
func (k *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	_ = k.load() // on failure the previous certificate stays in use
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cert, nil
}

// load reads the pair when the files changed since the last load.
func (k *keyPair) load() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	stamp := ""
	for _, name := range []string{k.certFile, k.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return err
		}
		stamp += fmt.Sprintf("%d@%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	if k.cert != nil && stamp == k.stamp {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return err
	}
	k.cert, k.stamp = &cert, stamp
	return nil
}

// newClient builds the go-redis client cfg selects: Sentinel, a single
// Redis or a Cluster, with its credentials and TLS.
func (s *Store) newClient() error {
	cfg := s.cfg
	switch {
	case cfg.URL != "" && len(cfg.ClusterAddrs) > 0:
		return fmt.Errorf("%w: set a Redis URL or cluster addresses, not both", ErrConfig)
	case cfg.SentinelMaster != "" && (cfg.URL != "" || len(cfg.ClusterAddrs) > 0):
		return fmt.Errorf("%w: set Sentinel, a Redis URL or cluster addresses, only one", ErrConfig)
	case cfg.SentinelMaster == "" && (cfg.SentinelUsername != "" || cfg.SentinelPassword != ""):
		return fmt.Errorf("%w: SentinelUsername and SentinelPassword are for Sentinel only (SentinelMaster)", ErrConfig)
	case cfg.SentinelMaster != "":
		if len(cfg.SentinelAddrs) == 0 {
			return fmt.Errorf("%w: Sentinel needs at least one sentinel address", ErrConfig)
		}
		s.client = goredis.NewFailoverClient(s.universalOptions(cfg.SentinelAddrs).Failover())
	case cfg.URL != "":
		opt, err := goredis.ParseURL(cfg.URL)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				// Its text quotes the URL, password included.
				return fmt.Errorf("%w: the Redis URL cannot be parsed: want redis://[user:pass@]host:port/db or rediss://…", ErrConfig)
			}
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if opt.Username != "" && cfg.Username != "" {
			return fmt.Errorf("%w: the Redis URL has a username and Username is set too: give it once", ErrConfig)
		}
		if opt.Password != "" && cfg.Password != "" {
			return fmt.Errorf("%w: the Redis URL has a password and Password is set too: give it once (better not in the URL)", ErrConfig)
		}
		if cfg.Username != "" {
			opt.Username = cfg.Username
		}
		if cfg.Password != "" {
			opt.Password = cfg.Password
		}
		if cfg.TLS != nil {
			opt.TLSConfig = cfg.TLS
		}
		s.applyTimeouts(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		opt.MaxRetries = 1
		s.client = goredis.NewClient(opt)
	case len(cfg.ClusterAddrs) > 0:
		s.cluster = goredis.NewClusterClient(s.universalOptions(cfg.ClusterAddrs).Cluster())
		s.client = s.cluster
	default:
		return fmt.Errorf("%w: no Redis URL, cluster addresses or Sentinel", ErrConfig)
	}
	return nil
}

// universalOptions are the settings a Sentinel or cluster client is made
// from: addrs (the sentinels' or the cluster's seeds), the credentials,
// TLS, one retry and the store's timeouts.
func (s *Store) universalOptions(addrs []string) *goredis.UniversalOptions {
	cfg := s.cfg
	opt := &goredis.UniversalOptions{
		Addrs:            addrs,
		MasterName:       cfg.SentinelMaster,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SentinelUsername: cfg.SentinelUsername,
		SentinelPassword: cfg.SentinelPassword,
		TLSConfig:        cfg.TLS,
		MaxRetries:       1,
	}
	s.applyTimeouts(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
	return opt
}

// probe pings Redis once, within Timeout, and returns the error, wrapping
// ErrAuth or ErrTLS, when Redis refuses the credentials or the
// certificates: settings no retry fixes. A Redis that does not answer is
// no error here: the store waits for it.
func (s *Store) probe() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	return s.refused(s.client.Ping(ctx).Err())
}

// refused returns err, redacted and wrapped with ErrAuth or ErrTLS, when
// it is a refusal of the credentials or certificates, and nil otherwise.
func (s *Store) refused(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case isAuthError(err):
		kind = ErrAuth
	case isTLSError(err):
		kind = ErrTLS
	default:
		return nil
	}
	if s.cfg.SentinelMaster != "" && strings.Contains(err.Error(), "sentinels") {
		kind = fmt.Errorf("%w; the sentinels refused (the sentinel username and password)", kind)
	}
	return s.red.wrap(kind, err)
}

// isAuthError reports whether err is Redis refusing (or asking for) the
// credentials.
func isAuthError(err error) bool {
	msg := err.Error()
	for _, s := range []string{
		"WRONGPASS",                   // wrong username or password, or a disabled user
		"NOAUTH",                      // authentication required, none given
		"invalid username-password",   // WRONGPASS's text
		"called without any password", // a password given to a Redis without one
		"ERR invalid password",        // Redis before 6
		"user is disabled",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isTLSError reports whether err is a TLS handshake that failed on the
// certificates, either side's.
func isTLSError(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		alert   tls.AlertError
		header  tls.RecordHeaderError
	)
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &alert) || errors.As(err, &header) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "x509: ") || strings.Contains(msg, "tls: ")
}
