package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	redisstore "github.com/tidings-io/tidings/store/redis"
)

// redisAuthFlags are the command line's Redis credentials and TLS
// settings, and what loadRedisAuth builds from them for the store.
type redisAuthFlags struct {
	redisUsername        string
	redisPassword        string
	redisPasswordFile    string
	redisTLS             bool
	redisTLSCA           string
	redisTLSCert         string
	redisTLSKey          string
	redisTLSServerName   string
	redisTLSInsecure     bool
	sentinelUsername     string
	sentinelPassword     string
	sentinelPasswordFile string
	redisAuth            redisstore.Auth // built by loadRedisAuth
}

// validateRedisAuth checks the Redis credential and TLS flags against each
// other and the Redis mode; the files are read by loadRedisAuth. No
// message quotes a password.
func (c config) validateRedisAuth() error {
	bad := func(name, format string, args ...any) error {
		return c.invalid(name, fmt.Sprintf(format, args...))
	}
	a := c.redisAuthFlags
	redis := c.redisURL != "" || len(c.redisCluster) > 0 || c.sentinelMaster != ""
	sentinel := c.sentinelMaster != ""
	var urlUser, urlPass, rediss bool
	if u, err := url.Parse(c.redisURL); c.redisURL != "" && err == nil {
		urlUser = u.User.Username() != ""
		_, urlPass = u.User.Password()
		rediss = u.Scheme == "rediss"
	}
	tlsOn := a.redisTLS || rediss
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"redis-username", a.redisUsername != ""}, {"redis-password", a.redisPassword != ""},
		{"redis-password-file", a.redisPasswordFile != ""}, {"redis-tls", a.redisTLS},
	} {
		if f.set && !redis {
			return bad(f.name, "Redis is not in use: give -redis, -redis-cluster or -redis-sentinel")
		}
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"redis-sentinel-username", a.sentinelUsername != ""}, {"redis-sentinel-password", a.sentinelPassword != ""},
		{"redis-sentinel-password-file", a.sentinelPasswordFile != ""},
	} {
		if f.set && !sentinel {
			return bad(f.name, "only for -redis-sentinel")
		}
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"redis-tls-ca", a.redisTLSCA != ""}, {"redis-tls-cert", a.redisTLSCert != ""}, {"redis-tls-key", a.redisTLSKey != ""},
		{"redis-tls-server-name", a.redisTLSServerName != ""}, {"redis-tls-insecure-skip-verify", a.redisTLSInsecure},
	} {
		if f.set && !tlsOn {
			return bad(f.name, "TLS is off: give -redis-tls too (or a rediss:// URL)")
		}
	}
	switch {
	case a.redisPassword != "" && a.redisPasswordFile != "":
		return bad("redis-password", "give -redis-password or -redis-password-file, not both")
	case a.sentinelPassword != "" && a.sentinelPasswordFile != "":
		return bad("redis-sentinel-password", "give -redis-sentinel-password or -redis-sentinel-password-file, not both")
	case urlPass && (a.redisPassword != "" || a.redisPasswordFile != ""):
		// Refused rather than one silently winning over the other.
		return bad("redis-password", "the -redis URL has a password too: give it once (better not in the URL, which may be shown)")
	case urlUser && a.redisUsername != "":
		return bad("redis-username", "the -redis URL has a username too: give it once")
	case (a.redisTLSCert == "") != (a.redisTLSKey == ""):
		return bad("redis-tls-cert", "give -redis-tls-cert and -redis-tls-key together")
	case a.redisTLSInsecure && a.redisTLSCA != "":
		return bad("redis-tls-insecure-skip-verify", "it turns verification off, so -redis-tls-ca would be ignored: give one of them")
	}
	return nil
}

// loadRedisAuth reads the password files and the TLS files and sets
// redisAuth, what the store is given.
func (c *config) loadRedisAuth() error {
	a := &c.redisAuthFlags
	a.redisAuth = redisstore.Auth{
		Username: a.redisUsername, Password: a.redisPassword,
		SentinelUsername: a.sentinelUsername, SentinelPassword: a.sentinelPassword,
	}
	var err error
	if a.redisPasswordFile != "" {
		if a.redisAuth.Password, err = readSecretFile(a.redisPasswordFile); err != nil {
			return c.invalid("redis-password-file", err.Error())
		}
	}
	if a.sentinelPasswordFile != "" {
		if a.redisAuth.SentinelPassword, err = readSecretFile(a.sentinelPasswordFile); err != nil {
			return c.invalid("redis-sentinel-password-file", err.Error())
		}
	}
	if !a.redisTLS && a.redisTLSCA == "" && a.redisTLSCert == "" && a.redisTLSServerName == "" && !a.redisTLSInsecure {
		return nil // a rediss:// URL alone: the store's TLS with the system's roots
	}
	trim := func(err error) string { return strings.TrimPrefix(err.Error(), redisstore.ErrConfig.Error()+": ") }
	if a.redisTLSCA != "" {
		// Read alone first, so that a bad CA file is blamed on its flag.
		if _, err := redisstore.LoadTLS(redisstore.TLSFiles{CAFile: a.redisTLSCA}); err != nil {
			return c.invalid("redis-tls-ca", trim(err))
		}
	}
	a.redisAuth.TLS, err = redisstore.LoadTLS(redisstore.TLSFiles{
		CAFile: a.redisTLSCA, CertFile: a.redisTLSCert, KeyFile: a.redisTLSKey,
		ServerName: a.redisTLSServerName, InsecureSkipVerify: a.redisTLSInsecure,
	})
	if err != nil {
		return c.invalid("redis-tls-cert", trim(err))
	}
	return nil
}

// readSecretFile returns the secret a file holds, without the final
// newline that editors and `echo` add; the error never quotes the
// content.
func readSecretFile(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return s, nil
}
