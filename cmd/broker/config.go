package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidings-io/tidings/broker"
	tdconfig "github.com/tidings-io/tidings/config"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/store/memory"
	redisstore "github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
)

// config is the broker's configuration: flags, then environment, then
// the config file, then defaults.
type config struct {
	// configFile is -config: the YAML file read after the environment.
	configFile   string
	addr         string
	nodeID       string
	redisURL     string
	redisCluster []string
	// redisSentinel is -redis-sentinel, master@host:port,…, read into
	// sentinelMaster and sentinelAddrs.
	redisSentinel  string
	sentinelMaster string
	sentinelAddrs  []string
	redisTimeout   time.Duration
	redisPrefix    string
	redisAuthFlags
	hookFlags
	demo            bool
	shutdownTimeout time.Duration
	apiKeys         []string
	allowedOrigins  []string
	publicHosts     []string
	historySize     int
	historyBytes    int64
	outboundBytes   int64
	historyTTL      time.Duration
	idemWindow      time.Duration
	maxMessageSize  int
	maxBodySize     int
	queueSize       int
	queueBytes      int
	heartbeat       time.Duration
	shards          int
	logLevel        string
	logFormat       string
	pprofAddr       string
	wsReaders       string
	// permessage-deflate (ws.Config.Compression, CompressionMinSize).
	wsCompression        bool
	wsCompressionMinSize int
	// The control plane (package control/node).
	presence    bool
	joinLeave   bool
	presenceTTL time.Duration
	revokeFor   time.Duration
	// The HTTP server's hold on connections (see connGuard).
	httpIdleTimeout time.Duration
	httpIPMaxIdle   int
	maxConns        int
	security
	// fromEnv maps the name of each flag set from the environment to its
	// variable, and fromFile each set from the config file to its place
	// (path:line), so that an invalid value names where it came from.
	fromEnv  map[string]string
	fromFile map[string]string
	// The config file (nil without one), and its namespaces with what
	// they leave unset taken from the flags.
	file       *tdconfig.File
	namespaces tdconfig.Namespaces
	// settings holds every option's value as its flag holds it, sources
	// where those not at their default came from (see fileLayer).
	settings, sources map[string]string
	// envWarnings are the TIDINGS_* variables that set nothing.
	envWarnings []tdconfig.EnvWarning
}

// usageError is a bad command line or environment: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errHelp reports that -h was asked for and the usage was printed.
var errHelp = errors.New("help requested")

// errVersion reports that -version was asked for and the version printed.
var errVersion = errors.New("version requested")

// envName is the environment variable that sets flag name.
func envName(name string) string { return tdconfig.EnvName(name) }

// flagSet declares every flag of the broker on a new flag set: -config
// and -version, and one per option of package config, bound to c's
// fields (see bindings). It returns -version's value too.
func (c *config) flagSet() (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.configFile, "config", "", "YAML file of settings (keys: these flags' names) and namespaces (options per topic pattern); a flag or TIDINGS_* variable wins over it, and SIGHUP rereads it")
	for _, b := range c.bindings() {
		b.declare(fs)
	}
	// -version has no environment variable: it is a command, not a setting.
	showVersion := fs.Bool("version", false, "print the version (stamped at build time) and exit")
	return fs, showVersion
}

// bindings ties each option of package config to its field of c, with
// the package's Default constant as its default where there is one;
// the option gives the flag its name, its usage and any other default.
func (c *config) bindings() []binding {
	return []binding{
		opt("addr", &c.addr),
		opt("node-id", &c.nodeID),
		opt("shutdown-timeout", &c.shutdownTimeout),
		optDef("shards", &c.shards, broker.DefaultShards),
		opt("demo", &c.demo),

		opt("redis", &c.redisURL),
		opt("redis-cluster", &c.redisCluster),
		opt("redis-sentinel", &c.redisSentinel),
		optDef("redis-timeout", &c.redisTimeout, redisstore.DefaultTimeout),
		optDef("redis-prefix", &c.redisPrefix, redisstore.DefaultPrefix),
		opt("redis-username", &c.redisUsername),
		opt("redis-password", &c.redisPassword),
		opt("redis-password-file", &c.redisPasswordFile),
		opt("redis-tls", &c.redisTLS),
		opt("redis-tls-ca", &c.redisTLSCA),
		opt("redis-tls-cert", &c.redisTLSCert),
		opt("redis-tls-key", &c.redisTLSKey),
		opt("redis-tls-server-name", &c.redisTLSServerName),
		opt("redis-tls-insecure-skip-verify", &c.redisTLSInsecure),
		opt("redis-sentinel-username", &c.sentinelUsername),
		opt("redis-sentinel-password", &c.sentinelPassword),
		opt("redis-sentinel-password-file", &c.sentinelPasswordFile),

		// history-size, history-ttl and idempotency-window apply to
		// either store; the two stores' defaults agree
		// (TestStoreDefaultsAgree).
		optDef("history-size", &c.historySize, memory.DefaultHistorySize),
		optDef("history-ttl", &c.historyTTL, memory.DefaultHistoryTTL),
		optDef("history-bytes", &c.historyBytes, memory.DefaultHistoryBytes),
		optDef("idempotency-window", &c.idemWindow, memory.DefaultIdempotencyWindow),
		optDef("max-message-size", &c.maxMessageSize, ws.DefaultMaxMessageSize),
		optDef("max-body-size", &c.maxBodySize, httpapi.DefaultMaxBodySize),
		optDef("publish-rate", &c.publishRate, httpapi.DefaultPublishRate),

		optDef("queue-size", &c.queueSize, broker.DefaultQueueSize),
		optDef("queue-bytes", &c.queueBytes, broker.DefaultQueueBytes),
		optDef("outbound-bytes", &c.outboundBytes, broker.DefaultOutboundBytes),
		optDef("heartbeat", &c.heartbeat, ws.DefaultHeartbeat),
		opt("ws-readers", &c.wsReaders),
		opt("ws-compression", &c.wsCompression),
		optDef("ws-compression-min-size", &c.wsCompressionMinSize, ws.DefaultCompressionMinSize),
		optDef("max-sessions", &c.maxSessions, ws.DefaultMaxSessions),
		optDef("ip-conn-rate", &c.ipConnRate, ws.DefaultIPConnRate),
		optDef("ip-conn-burst", &c.ipConnBurst, ws.DefaultIPConnBurst),
		optDef("ip-max-conns", &c.ipMaxConns, ws.DefaultIPMaxConns),
		optDef("max-subscriptions", &c.maxSubscriptions, broker.DefaultMaxSubscriptions),
		optDef("op-rate", &c.opRate, ws.DefaultOpRate),
		optDef("op-burst", &c.opBurst, ws.DefaultOpBurst),
		opt("allowed-origins", &c.allowedOrigins),
		opt("public-hosts", &c.publicHosts),

		opt("jwt-key", &c.jwtKey),
		opt("jwt-public-key-file", &c.jwtPublicKeyFile),
		opt("jwt-jwks-url", &c.jwtJWKSURL),
		opt("jwt-audience", &c.jwtAudience),
		opt("jwt-issuer", &c.jwtIssuer),
		opt("jwt-leeway", &c.jwtLeeway),
		opt("api-keys", &c.apiKeys),
		opt("api-keys-file", &c.apiKeysFile),
		opt("hook-connect", &c.hookConnect),
		opt("hook-subscribe", &c.hookSubscribe),
		opt("hook-publish", &c.hookPublish),
		opt("hook-refresh", &c.hookRefresh),
		optDef("hook-timeout", &c.hookTimeout, hooks.DefaultTimeout),
		opt("hook-forward-headers", &c.hookForwardHeaders),
		opt("hook-forward-cookies", &c.hookForwardCookies),

		opt("trusted-proxies", &c.trustedProxies),
		opt("handshake-timeout", &c.handshakeTimeout),
		opt("read-timeout", &c.readTimeout),
		optDef("write-timeout", &c.writeTimeout, ws.DefaultWriteTimeout),
		opt("max-header-bytes", &c.maxHeaderBytes),
		opt("http-idle-timeout", &c.httpIdleTimeout),
		opt("http-ip-max-idle", &c.httpIPMaxIdle),
		opt("max-conns", &c.maxConns),
		opt("tls-cert", &c.tlsCert),
		opt("tls-key", &c.tlsKey),

		opt("presence", &c.presence),
		opt("join-leave", &c.joinLeave),
		optDef("presence-ttl", &c.presenceTTL, ctlnode.DefaultPresenceTTL),
		optDef("revoke-for", &c.revokeFor, ctlnode.DefaultRevokeFor),

		opt("log-level", &c.logLevel),
		opt("log-format", &c.logFormat),
		opt("pprof-addr", &c.pprofAddr),
	}
}

// parseConfig reads args, then the TIDINGS_* environment for every flag not
// given on the command line, then the config file (-config) for every
// flag set by neither. -h prints the flags to stdout.
func parseConfig(args []string, env environment, stdout io.Writer) (config, error) {
	c := config{fromEnv: map[string]string{}, fromFile: map[string]string{}}
	fs, showVersion := c.flagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stdout)
			return c, errHelp
		}
		return c, usageError{err.Error()}
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return c, errVersion
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil || f.Name == "version" {
			return
		}
		if v := env.Getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = usageError{fmt.Sprintf("invalid value %q for flag -%s from %s: %v", v, f.Name, envName(f.Name), err)}
			}
			c.fromEnv[f.Name] = envName(f.Name)
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := c.fileLayer(fs, given); err != nil {
		return c, err
	}
	c.envWarnings = tdconfig.UnknownEnv(env.Environ())
	if c.redisSentinel != "" {
		name, addrs, _ := strings.Cut(c.redisSentinel, "@")
		c.sentinelMaster, c.sentinelAddrs = name, splitList(addrs)
		if c.sentinelMaster == "" {
			c.sentinelMaster = "-" // reported as invalid by validate
		}
	}
	if c.nodeID == "" {
		c.nodeID = defaultNodeID()
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	if c.file != nil {
		c.namespaces = c.file.Namespaces(c.defaults())
	}
	return c, c.loadRedisAuth()
}

// validate checks the values flag parsing accepts but the broker does
// not: first every option's against its Bound, Max and Enum in package
// config, then what the table does not say.
func (c config) validate() error {
	bad := func(name, format string, args ...any) error {
		return c.invalid(name, fmt.Sprintf(format, args...))
	}
	for _, o := range tdconfig.Options() {
		if err := o.Check(c.settings[o.Name]); err != nil {
			return c.invalid(o.Name, err.Error())
		}
	}
	if c.redisURL != "" && len(c.redisCluster) > 0 {
		return bad("redis-cluster", "give -redis or -redis-cluster, not both")
	}
	if c.redisURL != "" {
		if u, err := url.Parse(c.redisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return bad("redis", "%q: want redis://[user:pass@]host:port/db or rediss://…", redactURL(c.redisURL))
		}
	}
	if c.sentinelMaster != "" {
		if c.redisURL != "" || len(c.redisCluster) > 0 {
			return bad("redis-sentinel", "give only one of -redis, -redis-cluster and -redis-sentinel")
		}
		if c.sentinelMaster == "-" || len(c.sentinelAddrs) == 0 {
			return bad("redis-sentinel", "want master@host:port[,host:port…]")
		}
		for _, a := range c.sentinelAddrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return bad("redis-sentinel", "%q: want host:port", a)
			}
		}
	}
	for _, a := range c.redisCluster {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return bad("redis-cluster", "%q: want host:port", a)
		}
	}
	if c.redisPrefix == "" {
		return bad("redis-prefix", "must not be empty")
	}
	if err := c.validateRedisAuth(); err != nil {
		return err
	}
	for _, o := range c.allowedOrigins {
		if err := ws.ValidOrigin(o); err != nil {
			return bad("allowed-origins", "%v", err)
		}
	}
	if c.pprofAddr != "" {
		if err := checkLoopbackAddr(c.pprofAddr); err != nil {
			return bad("pprof-addr", "%v", err)
		}
	}
	return c.security.validate(c)
}

// loopbackOnly ends every refusal of a -pprof-addr value.
const loopbackOnly = "profiling is served on loopback only: want 127.0.0.1:port (or another 127.0.0.0/8 address), [::1]:port or localhost:port"

// checkLoopbackAddr checks that addr is host:port with a loopback host:
// the profiling endpoints show the command line, the goroutines and the
// heap, and take CPU profiles on demand, so they must not be reachable
// from another machine.
func checkLoopbackAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port; %s", addr, loopbackOnly)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535; %s", addr, port, loopbackOnly)
	}
	if host == "" {
		return fmt.Errorf("%q has no host, which means every interface; %s", addr, loopbackOnly)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("%q: %s is not a loopback address; %s", addr, host, loopbackOnly)
	}
	return nil
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP
// address (127.0.0.0/8, ::1) without a zone.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.IsLoopback()
}

// invalid is the usage error for a bad value of flag name, naming the
// environment variable, or the config file and line, when the value came
// from there.
func (c config) invalid(name, detail string) error {
	if env, ok := c.fromEnv[name]; ok {
		return usageError{fmt.Sprintf("invalid value for flag -%s from %s: %s", name, env, detail)}
	}
	if where, ok := c.fromFile[name]; ok {
		return usageError{fmt.Sprintf("invalid value for flag -%s from %s (key %s): %s", name, where, name, detail)}
	}
	return usageError{fmt.Sprintf("invalid value for flag -%s: %s", name, detail)}
}

// redactURL hides a URL's password so that errors do not print it.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// defaultNodeID is the hostname and a short random suffix.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "tidings"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// printUsage lists every flag with its environment variable and default.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintln(w, "Usage: broker [flags]")
	fmt.Fprintln(w, "Every flag but -version can also be set by its environment variable, and every flag but -version and -config")
	fmt.Fprintln(w, "by its name in the -config file; a flag on the command line wins over the environment, which wins over the file.")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" {
			fmt.Fprintf(w, "  -version\n    \t%s\n", f.Usage)
			return
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  -%s (env %s, default %s)\n    \t%s\n", f.Name, envName(f.Name), def, f.Usage)
	})
}
