package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/transport/clientip"
	"github.com/tidings-io/tidings/transport/tlsreload"
)

// security is the part of the command line about authentication, limits,
// timeouts and TLS.
type security struct {
	jwtKey           string
	jwtPublicKeyFile string
	jwtJWKSURL       string
	jwtAudience      string
	jwtIssuer        string
	jwtLeeway        time.Duration
	apiKeysFile      string
	publishRate      float64
	trustedProxies   []string
	maxSessions      int
	ipConnRate       float64
	ipConnBurst      int
	ipMaxConns       int
	maxSubscriptions int
	opRate           float64
	opBurst          int
	handshakeTimeout time.Duration
	readTimeout      time.Duration
	writeTimeout     time.Duration
	maxHeaderBytes   int
	tlsCert          string
	tlsKey           string
}

// validate checks the security values flag parsing and package config's
// table accept but the broker does not; the files are read later, by
// build.
func (s security) validate(c config) error {
	bad := func(name, format string, args ...any) error {
		return c.invalid(name, fmt.Sprintf(format, args...))
	}
	keys := 0
	for _, k := range []string{s.jwtKey, s.jwtPublicKeyFile, s.jwtJWKSURL} {
		if k != "" {
			keys++
		}
	}
	switch {
	case keys > 1:
		return bad("jwt-key", "give one of -jwt-key, -jwt-public-key-file and -jwt-jwks-url")
	case s.jwtKey != "" && len(s.jwtKey) < auth.MinHMACKeyLen:
		return bad("jwt-key", "%d bytes: at least %d are needed", len(s.jwtKey), auth.MinHMACKeyLen)
	}
	if _, err := auth.ParseAPIKeys(c.apiKeys); err != nil {
		return bad("api-keys", "%s", trimAuth(err))
	}
	if _, err := trustedProxies(s.trustedProxies); err != nil {
		return bad("trusted-proxies", "%v", err)
	}
	return nil
}

// defaultTrustedProxies is what an empty -trusted-proxies stands for:
// the private ranges, where load balancers and ingress controllers live.
// A public peer is never trusted, so a client on the internet that
// connects directly cannot choose its address with a header; loopback is
// not either, so the node's own host (tools, probes, publishers that use
// the loopback right) is still counted and bounded per address, and a
// proxy on the same host is named on purpose (loopback).
var defaultTrustedProxies = []string{clientip.KeywordPrivate}

// trustedProxies reads -trusted-proxies: CIDRs, addresses, the keywords
// private and loopback, or none alone; empty is defaultTrustedProxies.
// (The flag's own default is empty rather than "private" so that an
// empty TIDINGS_TRUSTED_PROXIES, which counts as unset, and an empty
// flag mean the same.)
func trustedProxies(list []string) ([]netip.Prefix, error) {
	if len(list) == 0 {
		list = defaultTrustedProxies
	}
	return clientip.ParseTrusted(list)
}

// trimAuth drops the auth package's sentinel prefix from an error.
func trimAuth(err error) string {
	msg := err.Error()
	for _, p := range []string{auth.ErrAPIKeys.Error() + ": ", auth.ErrConfig.Error() + ": ", "auth: "} {
		if len(msg) > len(p) && msg[:len(p)] == p {
			return msg[len(p):]
		}
	}
	return msg
}

// secured is what the security flags build: the token verifier (nil
// without a key), the API keys, the trusted proxies and the TLS reloader
// (nil without TLS).
type secured struct {
	verifier *auth.Verifier
	apiKeys  []auth.APIKey
	proxies  []netip.Prefix
	tls      *tlsreload.Reloader
}

// build reads the key files and prepares the security parts; failures are
// usage errors naming the flag. (Checks that involve two flags are made
// here, not in validate, so that each flag alone parses.)
func (s security) build(ctx context.Context, c config, log *slog.Logger) (secured, error) {
	var out secured
	var err error
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return out, c.invalid("tls-cert", "give -tls-cert and -tls-key together")
	}
	if s.jwtKey == "" && s.jwtPublicKeyFile == "" && s.jwtJWKSURL == "" && (s.jwtAudience != "" || s.jwtIssuer != "") {
		return out, c.invalid("jwt-audience", "-jwt-audience and -jwt-issuer need -jwt-key, -jwt-public-key-file or -jwt-jwks-url")
	}
	if out.proxies, err = trustedProxies(s.trustedProxies); err != nil {
		return out, c.invalid("trusted-proxies", err.Error())
	}
	if out.apiKeys, err = auth.ParseAPIKeys(c.apiKeys); err != nil {
		return out, c.invalid("api-keys", trimAuth(err))
	}
	if s.apiKeysFile != "" {
		data, err := os.ReadFile(s.apiKeysFile)
		if err != nil {
			return out, c.invalid("api-keys-file", err.Error())
		}
		fileKeys, err := auth.ParseAPIKeysFile(data)
		if err != nil {
			return out, c.invalid("api-keys-file", trimAuth(err))
		}
		out.apiKeys = append(out.apiKeys, fileKeys...)
		if err := auth.CheckAPIKeys(out.apiKeys); err != nil {
			return out, c.invalid("api-keys-file", trimAuth(err))
		}
	}
	acfg := auth.Config{
		HMACKey:  []byte(s.jwtKey),
		JWKSURL:  s.jwtJWKSURL,
		Audience: s.jwtAudience,
		Issuer:   s.jwtIssuer,
		Leeway:   s.jwtLeeway,
		Logger:   log,
	}
	flagName := "jwt-key"
	switch {
	case s.jwtPublicKeyFile != "":
		flagName = "jwt-public-key-file"
		if acfg.PublicKeyPEM, err = os.ReadFile(s.jwtPublicKeyFile); err != nil {
			return out, c.invalid(flagName, err.Error())
		}
	case s.jwtJWKSURL != "":
		flagName = "jwt-jwks-url"
	case s.jwtKey == "":
		flagName = ""
	}
	if flagName != "" {
		if out.verifier, err = auth.New(acfg); err != nil {
			return out, c.invalid(flagName, trimAuth(err))
		}
		if s.jwtJWKSURL != "" {
			// Warm the cache; a key server that is down now is tried
			// again when the first token comes.
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := out.verifier.Refresh(fctx); err != nil {
				log.Warn("JWKS not fetched at start; will retry on the first token", "url", s.jwtJWKSURL, "err", err)
			}
			cancel()
		}
	}
	if s.tlsCert != "" {
		if out.tls, err = tlsreload.New(s.tlsCert, s.tlsKey, log); err != nil {
			return out, c.invalid("tls-cert", err.Error())
		}
	}
	return out, nil
}

// limitOf turns a flag's "0: no limit" into a package config's "negative:
// no limit" (where zero means the default).
func limitOf[T int | float64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// tlsPollInterval is how often the certificate files are checked for
// changes.
const tlsPollInterval = 2 * time.Second

// watchTLS reloads the certificate when its files change, until the
// returned stop is called; SIGHUP reloads it too (see run and watchHUP).
func watchTLS(r *tlsreload.Reloader) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Watch(ctx, tlsPollInterval) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// authMode names how sessions authenticate, for the startup log line.
func authMode(c config) string {
	switch {
	case c.jwtKey != "":
		return "jwt-hmac"
	case c.jwtPublicKeyFile != "":
		return "jwt-public-key"
	case c.jwtJWKSURL != "":
		return "jwt-jwks"
	}
	return "anonymous"
}
