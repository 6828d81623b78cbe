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
	"github.com/tidings-io/tidings/store/memory"
	redisstore "github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
)

// config is the broker's configuration: flags, then environment, then
// the config file, then defaults.
type config struct {
	// configFile is -config: the YAML file read after the environment.
	configFile     string
	addr           string
	nodeID         string
	redisURL       string
	redisCluster   []string
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
func envName(name string) string {
	return "TIDINGS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// rawLists are the flags given as comma-separated text, split after
// parsing.
type rawLists struct {
	apiKeys, origins, publicHosts, redisCluster, redisSentinel string
	proxies                                                    *string
	showVersion                                                *bool
}

// flagSet declares every flag of the broker on a new flag set, bound to
// c's fields (the comma-separated ones to lists).
func (c *config) flagSet() (*flag.FlagSet, *rawLists) {
	l := &rawLists{}
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.configFile, "config", "", "YAML file of settings (keys: these flags' names) and namespaces (options per topic pattern); a flag or TIDINGS_* variable wins over it, and SIGHUP rereads it")
	fs.StringVar(&c.addr, "addr", ":8080", "listen address")
	fs.StringVar(&c.nodeID, "node-id", "", "id reported in welcome frames and logs (default: hostname and a short random suffix)")
	fs.StringVar(&c.redisURL, "redis", "", "Redis URL, redis://[user:pass@]host:port/db or rediss:// for TLS (default: in-memory, single node)")
	fs.StringVar(&l.redisCluster, "redis-cluster", "", "comma-separated Redis Cluster seed addresses host:port (instead of -redis)")
	fs.StringVar(&l.redisSentinel, "redis-sentinel", "", "Redis Sentinel as master@host:port,host:port: the master's name and the sentinels (instead of -redis)")
	fs.DurationVar(&c.redisTimeout, "redis-timeout", redisstore.DefaultTimeout, "bound on every Redis operation; a publish fails with 503 after it")
	fs.StringVar(&c.redisPrefix, "redis-prefix", redisstore.DefaultPrefix, "prefix of every Redis key and channel")
	c.redisAuthFlags.flags(fs)
	c.hookFlags.flags(fs)
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "bound on graceful shutdown")
	fs.StringVar(&l.apiKeys, "api-keys", "", "comma-separated publisher API keys, name:secret or secret (default: HTTP publish from loopback only)")
	fs.StringVar(&l.origins, "allowed-origins", "", "comma-separated Origin allow-list: origins, patterns like https://*.example.com, or * for all (default: the node's own pages, see -public-hosts)")
	fs.StringVar(&l.publicHosts, "public-hosts", "", "comma-separated names browsers reach the node by (its DNS name, the name a proxy serves it under); with no -allowed-origins, pages on these hosts, on loopback and on the address a connection came in on may open sessions")
	// -history-size, -history-ttl and -idempotency-window apply to
	// either store; the two stores' defaults agree (TestStoreDefaultsAgree).
	fs.IntVar(&c.historySize, "history-size", memory.DefaultHistorySize, "messages kept per topic for resume")
	fs.DurationVar(&c.historyTTL, "history-ttl", memory.DefaultHistoryTTL, "how long messages stay in history")
	fs.Int64Var(&c.historyBytes, "history-bytes", memory.DefaultHistoryBytes, "bytes the in-memory store's history holds on the node, every topic together; over it the oldest messages go first")
	fs.Int64Var(&c.outboundBytes, "outbound-bytes", broker.DefaultOutboundBytes, "bytes every session's outbound queue holds on the node together; over it the sessions with the fullest queues are cut as slow consumers")
	fs.DurationVar(&c.idemWindow, "idempotency-window", memory.DefaultIdempotencyWindow, "how long a publish's idempotency key is remembered on its topic: a retry within it is answered as the first publish and stored once")
	fs.IntVar(&c.maxMessageSize, "max-message-size", ws.DefaultMaxMessageSize, "largest inbound WebSocket message in bytes, after reassembly")
	fs.IntVar(&c.maxBodySize, "max-body-size", httpapi.DefaultMaxBodySize, "largest HTTP publish body in bytes")
	fs.IntVar(&c.queueSize, "queue-size", broker.DefaultQueueSize, "per-session outbound queue bound in frames")
	fs.IntVar(&c.queueBytes, "queue-bytes", broker.DefaultQueueBytes, "per-session outbound queue bound in bytes")
	fs.DurationVar(&c.heartbeat, "heartbeat", ws.DefaultHeartbeat, "server ping interval; a session silent for two intervals is closed")
	fs.IntVar(&c.shards, "shards", broker.DefaultShards, "topic hub shards")
	fs.BoolVar(&c.demo, "demo", true, "serve the live demo at /demo and publish demo.prices.* and demo.chat in process")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&c.wsReaders, "ws-readers", "poll", "how idle sessions wait for input: poll (one epoll set; a reader goroutine only while bytes arrive) or goroutine (a reader goroutine per session)")
	fs.BoolVar(&c.wsCompression, "ws-compression", false, "negotiate permessage-deflate with WebSocket clients that offer it: each message is compressed once per node, whatever its subscribers, and the clients' compressed messages are inflated")
	fs.IntVar(&c.wsCompressionMinSize, "ws-compression-min-size", ws.DefaultCompressionMinSize, "smallest WebSocket payload in bytes sent compressed (with -ws-compression); smaller ones go as they are")
	fs.BoolVar(&c.presence, "presence", false, "keep the presence of every topic (who is subscribed, on every node) for GET /v1/presence and the presence ops")
	fs.BoolVar(&c.joinLeave, "join-leave", false, "send join and leave frames to every topic's subscribers when a session subscribes, unsubscribes or ends, on any node")
	fs.DurationVar(&c.presenceTTL, "presence-ttl", ctlnode.DefaultPresenceTTL, "how long a presence entry lives unless its node refreshes it (every third of it): how long the sessions of a node that died stay listed")
	fs.DurationVar(&c.revokeFor, "revoke-for", ctlnode.DefaultRevokeFor, "how long a revocation without until lasts: the longest lifetime of the tokens you issue")
	fs.StringVar(&c.pprofAddr, "pprof-addr", "", "serve net/http/pprof at /debug/pprof/ on this loopback host:port, apart from -addr (default: off)")
	fs.DurationVar(&c.httpIdleTimeout, "http-idle-timeout", 15*time.Second, "how long an HTTP keep-alive connection may wait idle for its next request before it is closed")
	fs.IntVar(&c.httpIPMaxIdle, "http-ip-max-idle", 64, "idle HTTP keep-alive connections one peer address may hold (IPv6: one /64; trusted proxies exempt); beyond it a response says Connection: close and a connection that turns idle is closed (0: no limit)")
	fs.IntVar(&c.maxConns, "max-conns", 0, "client connections the node holds at once, HTTP and WebSocket; the last eighth are kept for addresses that hold fewer than 8, and beyond it a new connection is closed at once (default 0: the open-file limit less a reserve of an eighth of it, at least 32 and at most 1024)")
	l.proxies = c.security.flags(fs)
	// -version has no environment variable: it is a command, not a setting.
	l.showVersion = fs.Bool("version", false, "print the version (stamped at build time) and exit")
	return fs, l
}

// parseConfig reads args, then the TIDINGS_* environment for every flag not
// given on the command line, then the config file (-config) for every
// flag set by neither. -h prints the flags to stdout.
func parseConfig(args []string, env environment, stdout io.Writer) (config, error) {
	c := config{fromEnv: map[string]string{}, fromFile: map[string]string{}}
	fs, l := c.flagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stdout)
			return c, errHelp
		}
		return c, usageError{err.Error()}
	}
	if *l.showVersion {
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
	c.apiKeys = splitList(l.apiKeys)
	c.allowedOrigins = splitList(l.origins)
	c.publicHosts = splitList(l.publicHosts)
	c.redisCluster = splitList(l.redisCluster)
	if l.redisSentinel != "" {
		name, addrs, _ := strings.Cut(l.redisSentinel, "@")
		c.sentinelMaster, c.sentinelAddrs = name, splitList(addrs)
		if c.sentinelMaster == "" {
			c.sentinelMaster = "-" // reported as invalid by validate
		}
	}
	c.trustedProxies = splitList(*l.proxies)
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

// validate checks the values flag parsing accepts but the broker does not.
func (c config) validate() error {
	bad := func(name, format string, args ...any) error {
		return c.invalid(name, fmt.Sprintf(format, args...))
	}
	positiveInts := []struct {
		name string
		v    int
	}{
		{"history-size", c.historySize}, {"max-message-size", c.maxMessageSize},
		{"max-body-size", c.maxBodySize}, {"queue-size", c.queueSize},
		{"queue-bytes", c.queueBytes}, {"shards", c.shards},
		{"ws-compression-min-size", c.wsCompressionMinSize},
	}
	if c.historyBytes <= 0 {
		return bad("history-bytes", "%d: must be a positive number", c.historyBytes)
	}
	if c.outboundBytes <= 0 {
		return bad("outbound-bytes", "%d: must be a positive number", c.outboundBytes)
	}
	if c.httpIPMaxIdle < 0 {
		return bad("http-ip-max-idle", "%d: must not be negative (0: no limit)", c.httpIPMaxIdle)
	}
	if c.maxConns < 0 {
		return bad("max-conns", "%d: must not be negative (0: from the open-file limit)", c.maxConns)
	}
	for _, p := range positiveInts {
		if p.v <= 0 {
			return bad(p.name, "%d: must be a positive number", p.v)
		}
	}
	positiveDurations := []struct {
		name string
		v    time.Duration
	}{
		{"shutdown-timeout", c.shutdownTimeout}, {"history-ttl", c.historyTTL}, {"heartbeat", c.heartbeat},
		{"presence-ttl", c.presenceTTL}, {"revoke-for", c.revokeFor},
		{"redis-timeout", c.redisTimeout}, {"idempotency-window", c.idemWindow},
		{"http-idle-timeout", c.httpIdleTimeout},
	}
	for _, p := range positiveDurations {
		if p.v <= 0 {
			return bad(p.name, "%s: must be a positive duration", p.v)
		}
	}
	if c.shards > 1<<16 {
		return bad("shards", "%d: at most 65536", c.shards)
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
	if c.wsReaders != "poll" && c.wsReaders != "goroutine" {
		return bad("ws-readers", "%q: want poll or goroutine", c.wsReaders)
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
