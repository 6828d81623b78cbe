package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/transport/clientip"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/tlsreload"
	"github.com/tidings-io/tidings/transport/ws"
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

// flags declares the security flags on fs; the comma-separated
// -trusted-proxies is returned to be split after parsing.
func (s *security) flags(fs *flag.FlagSet) *string {
	fs.StringVar(&s.jwtKey, "jwt-key", "", "HMAC secret (32 bytes or more) that signs session tokens (HS256/384/512); enables token authentication")
	fs.StringVar(&s.jwtPublicKeyFile, "jwt-public-key-file", "", "PEM file of the RSA, ECDSA or Ed25519 public key that verifies session tokens; enables token authentication")
	fs.StringVar(&s.jwtJWKSURL, "jwt-jwks-url", "", "URL of a JSON Web Key Set that verifies session tokens, refetched for unknown key ids; enables token authentication")
	fs.StringVar(&s.jwtAudience, "jwt-audience", "", "audience (aud) session tokens must name (default: not checked)")
	fs.StringVar(&s.jwtIssuer, "jwt-issuer", "", "issuer (iss) session tokens must have (default: not checked)")
	fs.DurationVar(&s.jwtLeeway, "jwt-leeway", 5*time.Second, "clock skew allowed on token exp, nbf and iat")
	fs.StringVar(&s.apiKeysFile, "api-keys-file", "", "JSON file of publisher API keys, each with optional topic patterns and rate")
	fs.Float64Var(&s.publishRate, "publish-rate", httpapi.DefaultPublishRate, "HTTP publish requests per second per API key (0: no limit)")
	proxies := fs.String("trusted-proxies", "", "comma-separated reverse proxies whose X-Forwarded-For or Forwarded names the client: CIDRs, addresses, private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7), loopback (127.0.0.0/8, ::1), or none alone for no proxy (default, when empty: private)")
	fs.IntVar(&s.maxSessions, "max-sessions", ws.DefaultMaxSessions, "WebSocket sessions per node; beyond it 503 (0: no limit)")
	fs.Float64Var(&s.ipConnRate, "ip-conn-rate", ws.DefaultIPConnRate, "new WebSocket sessions per second per client address (0: no limit)")
	fs.IntVar(&s.ipConnBurst, "ip-conn-burst", ws.DefaultIPConnBurst, "new WebSocket sessions a client address may open at once above -ip-conn-rate")
	fs.IntVar(&s.ipMaxConns, "ip-max-conns", ws.DefaultIPMaxConns, "WebSocket sessions per client address at once (0: no limit)")
	fs.IntVar(&s.maxSubscriptions, "max-subscriptions", broker.DefaultMaxSubscriptions, "subscriptions per session; beyond it error too_large")
	fs.Float64Var(&s.opRate, "op-rate", ws.DefaultOpRate, "commands per second per session; beyond it error rate_limited, repeatedly 1008 (0: no limit)")
	fs.IntVar(&s.opBurst, "op-burst", ws.DefaultOpBurst, "commands a session may send at once above -op-rate")
	fs.DurationVar(&s.handshakeTimeout, "handshake-timeout", 10*time.Second, "time a connection has to send its request headers (the WebSocket upgrade)")
	fs.DurationVar(&s.readTimeout, "read-timeout", 30*time.Second, "time an HTTP request has to arrive whole, body included")
	fs.DurationVar(&s.writeTimeout, "write-timeout", ws.DefaultWriteTimeout, "how long a WebSocket write may wait while the client reads nothing, and bound on writing an HTTP response")
	fs.IntVar(&s.maxHeaderBytes, "max-header-bytes", 16384, "largest HTTP request header in bytes")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "PEM certificate chain file: serve HTTPS and WSS (with -tls-key; reloaded on SIGHUP or change)")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM private key file of -tls-cert")
	return proxies
}

// validate checks the security values flag parsing accepts but the broker
// does not; the files are read later, by build.
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
	for _, p := range []struct {
		name string
		v    float64
	}{{"publish-rate", s.publishRate}, {"ip-conn-rate", s.ipConnRate}, {"op-rate", s.opRate},
		{"max-sessions", float64(s.maxSessions)}, {"ip-max-conns", float64(s.ipMaxConns)}} {
		if p.v < 0 {
			return bad(p.name, "%v: must not be negative (0: no limit)", p.v)
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"ip-conn-burst", s.ipConnBurst}, {"max-subscriptions", s.maxSubscriptions}, {"op-burst", s.opBurst}, {"max-header-bytes", s.maxHeaderBytes}} {
		if p.v <= 0 {
			return bad(p.name, "%d: must be a positive number", p.v)
		}
	}
	for _, p := range []struct {
		name string
		v    time.Duration
	}{{"jwt-leeway", s.jwtLeeway}, {"handshake-timeout", s.handshakeTimeout}, {"read-timeout", s.readTimeout}, {"write-timeout", s.writeTimeout}} {
		if p.v <= 0 {
			return bad(p.name, "%s: must be a positive duration", p.v)
		}
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
