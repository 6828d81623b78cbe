package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Type is the kind of value an option takes in the file.
type Type int

// The types of options.
const (
	// String is any scalar, taken as written.
	String Type = iota
	// Int is a whole number.
	Int
	// Float is a number.
	Float
	// Bool is true or false.
	Bool
	// Duration is a Go duration in a string: "30s", "5m", "1h30m".
	Duration
	// List is a YAML list of strings; the flag takes them comma-separated.
	List
)

func (t Type) String() string {
	return [...]string{"string", "int", "float", "bool", "duration", "list"}[t]
}

// Bound is what an Int, Float or Duration option's value must be.
type Bound int

// The bounds of numbers.
const (
	// Unbounded: any number.
	Unbounded Bound = iota
	// Positive: more than zero.
	Positive
	// NonNegative: zero or more (zero meaning "no limit" or "automatic",
	// as the option's help says).
	NonNegative
)

// Option is one setting of the broker: a flag, its TIDINGS_* environment
// variable and its key in the config file, which all share its Name.
type Option struct {
	// Name is the flag's name without its dash, and the file's key.
	Name string
	// Group is the heading the option is listed under in Example.
	Group string
	// Type is what the file's value must be.
	Type Type
	// Default is the broker's default, as the flag prints it.
	Default string
	// Help says what the option does: the flag's usage (see Usage) and,
	// with the options it names (-name) written as the file's keys
	// (name), the option's comment in Example.
	Help string
	// Bound limits a number; Max, when not zero, is its largest value.
	Bound Bound
	Max   int64
	// Enum lists the values a String option may take; empty: any.
	Enum []string
	// Secret options are masked wherever the configuration is shown.
	Secret bool
	// Reload options take effect on SIGHUP without a restart; a change to
	// any other is logged as needing one.
	Reload bool
}

// Env is the option's environment variable: TIDINGS_ and its name in
// upper case with '-' as '_'.
func (o Option) Env() string { return EnvName(o.Name) }

// EnvName is the environment variable of the option (or flag) name.
func EnvName(name string) string {
	return "TIDINGS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Groups of options, in the order Example lists them.
const (
	groupNode     = "Node"
	groupRedis    = "Store: Redis (none of these: the embedded in-memory store, one node)"
	groupHistory  = "History and publishing"
	groupSessions = "Sessions and limits"
	groupAuth     = "Authentication"
	groupHTTP     = "HTTP server and TLS"
	groupControl  = "Control plane"
	groupLogs     = "Logs and profiling"
)

// options is every option, grouped as Example lists them. cmd/broker
// declares its flags from it (name, help, default); its tests check that
// the defaults are those of the packages' Default constants.
var options = []Option{
	{Name: "addr", Group: groupNode, Type: String, Default: ":8080",
		Help: "listen address"},
	{Name: "node-id", Group: groupNode, Type: String, Default: "",
		Help: "id reported in welcome frames and logs (default: hostname and a short random suffix)"},
	{Name: "shutdown-timeout", Group: groupNode, Type: Duration, Default: "30s", Bound: Positive,
		Help: "bound on graceful shutdown"},
	{Name: "shards", Group: groupNode, Type: Int, Default: "64", Bound: Positive, Max: 1 << 16,
		Help: "topic hub shards"},
	{Name: "demo", Group: groupNode, Type: Bool, Default: "true",
		Help: "serve the live demo at /demo and publish demo.prices.* and demo.chat in process"},

	{Name: "redis", Group: groupRedis, Type: String, Default: "", Secret: true,
		Help: "Redis URL, redis://[user:pass@]host:port/db or rediss:// for TLS (default: in-memory, single node); keep the password out of it"},
	{Name: "redis-cluster", Group: groupRedis, Type: List, Default: "",
		Help: "Redis Cluster seed addresses host:port (instead of -redis)"},
	{Name: "redis-sentinel", Group: groupRedis, Type: String, Default: "",
		Help: "Redis Sentinel as master@host:port,host:port: the master's name and the sentinels (instead of -redis)"},
	{Name: "redis-timeout", Group: groupRedis, Type: Duration, Default: "2s", Bound: Positive,
		Help: "bound on every Redis operation; a publish fails with 503 after it"},
	{Name: "redis-prefix", Group: groupRedis, Type: String, Default: "tidings:",
		Help: "prefix of every Redis key and channel"},
	{Name: "redis-username", Group: groupRedis, Type: String, Default: "",
		Help: "Redis ACL username, for -redis, -redis-cluster or the master and replicas of -redis-sentinel (default: none, or the -redis URL's)"},
	{Name: "redis-password", Group: groupRedis, Type: String, Default: "", Secret: true,
		Help: "Redis password (requirepass, or the ACL user's): better TIDINGS_REDIS_PASSWORD from a Secret, or -redis-password-file, than the command line or the config file; never logged"},
	{Name: "redis-password-file", Group: groupRedis, Type: String, Default: "",
		Help: "file holding the Redis password (a mounted Secret; a final newline is dropped), instead of -redis-password"},
	{Name: "redis-tls", Group: groupRedis, Type: Bool, Default: "false",
		Help: "TLS to Redis, the cluster nodes and the sentinels (a rediss:// URL turns it on too)"},
	{Name: "redis-tls-ca", Group: groupRedis, Type: String, Default: "",
		Help: "PEM file of the CA certificates that verify Redis's certificate (default: the system's roots)"},
	{Name: "redis-tls-cert", Group: groupRedis, Type: String, Default: "",
		Help: "PEM client certificate file presented to Redis (tls-auth-clients), with -redis-tls-key; reread when it changes"},
	{Name: "redis-tls-key", Group: groupRedis, Type: String, Default: "",
		Help: "PEM private key file of -redis-tls-cert"},
	{Name: "redis-tls-server-name", Group: groupRedis, Type: String, Default: "",
		Help: "name Redis's certificate must carry (default: the host dialled)"},
	{Name: "redis-tls-insecure-skip-verify", Group: groupRedis, Type: Bool, Default: "false",
		Help: "accept any Redis certificate: for tests only, never in production"},
	{Name: "redis-sentinel-username", Group: groupRedis, Type: String, Default: "",
		Help: "ACL username for the sentinels of -redis-sentinel (default: none)"},
	{Name: "redis-sentinel-password", Group: groupRedis, Type: String, Default: "", Secret: true,
		Help: "password of the sentinels of -redis-sentinel (their requirepass): better TIDINGS_REDIS_SENTINEL_PASSWORD from a Secret, or -redis-sentinel-password-file, than the command line or the config file; never logged"},
	{Name: "redis-sentinel-password-file", Group: groupRedis, Type: String, Default: "",
		Help: "file holding the sentinels' password, instead of -redis-sentinel-password"},

	{Name: "history-size", Group: groupHistory, Type: Int, Default: "100", Bound: Positive, Reload: true,
		Help: "messages kept per topic for resume (a namespace's history_size overrides it)"},
	{Name: "history-ttl", Group: groupHistory, Type: Duration, Default: "5m0s", Bound: Positive, Reload: true,
		Help: "how long messages stay in history (a namespace's history_ttl overrides it)"},
	{Name: "history-bytes", Group: groupHistory, Type: Int, Default: "268435456", Bound: Positive,
		Help: "bytes the in-memory store's history holds on the node, every topic together; over it the oldest messages go first"},
	{Name: "idempotency-window", Group: groupHistory, Type: Duration, Default: "5m0s", Bound: Positive,
		Help: "how long a publish's idempotency key is remembered on its topic: a retry within it is answered as the first publish and stored once"},
	{Name: "max-message-size", Group: groupHistory, Type: Int, Default: "65536", Bound: Positive, Reload: true,
		Help: "largest inbound WebSocket message in bytes, after reassembly"},
	{Name: "max-body-size", Group: groupHistory, Type: Int, Default: "1048576", Bound: Positive, Reload: true,
		Help: "largest HTTP publish body in bytes"},
	{Name: "publish-rate", Group: groupHistory, Type: Float, Default: "1000", Bound: NonNegative, Reload: true,
		Help: "HTTP publish requests per second per API key (0: no limit)"},

	{Name: "queue-size", Group: groupSessions, Type: Int, Default: "1024", Bound: Positive,
		Help: "per-session outbound queue bound in frames"},
	{Name: "queue-bytes", Group: groupSessions, Type: Int, Default: "4194304", Bound: Positive,
		Help: "per-session outbound queue bound in bytes"},
	{Name: "outbound-bytes", Group: groupSessions, Type: Int, Default: "536870912", Bound: Positive,
		Help: "bytes every session's outbound queue holds on the node together; over it the sessions with the fullest queues are cut as slow consumers"},
	{Name: "heartbeat", Group: groupSessions, Type: Duration, Default: "25s", Bound: Positive,
		Help: "server ping interval; a session silent for two intervals is closed"},
	{Name: "ws-readers", Group: groupSessions, Type: String, Default: "poll", Enum: []string{"poll", "goroutine"},
		Help: "how idle sessions wait for input: poll (one epoll set; a reader goroutine only while bytes arrive) or goroutine (a reader goroutine per session)"},
	{Name: "ws-compression", Group: groupSessions, Type: Bool, Default: "false",
		Help: "negotiate permessage-deflate with WebSocket clients that offer it: each message is compressed once per node, whatever its subscribers, and the clients' compressed messages are inflated"},
	{Name: "ws-compression-min-size", Group: groupSessions, Type: Int, Default: "256", Bound: Positive,
		Help: "smallest WebSocket payload in bytes sent compressed (with -ws-compression); smaller ones go as they are"},
	{Name: "max-sessions", Group: groupSessions, Type: Int, Default: "100000", Bound: NonNegative,
		Help: "WebSocket sessions per node; beyond it 503 (0: no limit)"},
	{Name: "ip-conn-rate", Group: groupSessions, Type: Float, Default: "100", Bound: NonNegative,
		Help: "new WebSocket sessions per second per client address (0: no limit)"},
	{Name: "ip-conn-burst", Group: groupSessions, Type: Int, Default: "1000", Bound: Positive,
		Help: "new WebSocket sessions a client address may open at once above -ip-conn-rate"},
	{Name: "ip-max-conns", Group: groupSessions, Type: Int, Default: "1000", Bound: NonNegative,
		Help: "WebSocket sessions per client address at once (0: no limit)"},
	{Name: "max-subscriptions", Group: groupSessions, Type: Int, Default: "1000", Bound: Positive, Reload: true,
		Help: "subscriptions per session; beyond it error too_large"},
	{Name: "op-rate", Group: groupSessions, Type: Float, Default: "500", Bound: NonNegative, Reload: true,
		Help: "commands per second per session; beyond it error rate_limited, repeatedly 1008 (0: no limit)"},
	{Name: "op-burst", Group: groupSessions, Type: Int, Default: "1000", Bound: Positive, Reload: true,
		Help: "commands a session may send at once above -op-rate"},
	{Name: "allowed-origins", Group: groupSessions, Type: List, Default: "",
		Help: "Origin allow-list: origins, patterns like https://*.example.com, or * for all (default: the node's own pages, see -public-hosts)"},
	{Name: "public-hosts", Group: groupSessions, Type: List, Default: "",
		Help: "names browsers reach the node by (its DNS name, the name a proxy serves it under); with no -allowed-origins, pages on these hosts, on loopback and on the address a connection came in on may open sessions"},

	{Name: "jwt-key", Group: groupAuth, Type: String, Default: "", Secret: true,
		Help: "HMAC secret (32 bytes or more) that signs session tokens (HS256/384/512); enables token authentication"},
	{Name: "jwt-public-key-file", Group: groupAuth, Type: String, Default: "",
		Help: "PEM file of the RSA, ECDSA or Ed25519 public key that verifies session tokens; enables token authentication"},
	{Name: "jwt-jwks-url", Group: groupAuth, Type: String, Default: "",
		Help: "URL of a JSON Web Key Set that verifies session tokens, refetched for unknown key ids; enables token authentication"},
	{Name: "jwt-audience", Group: groupAuth, Type: String, Default: "",
		Help: "audience (aud) session tokens must name (default: not checked)"},
	{Name: "jwt-issuer", Group: groupAuth, Type: String, Default: "",
		Help: "issuer (iss) session tokens must have (default: not checked)"},
	{Name: "jwt-leeway", Group: groupAuth, Type: Duration, Default: "5s", Bound: Positive,
		Help: "clock skew allowed on token exp, nbf and iat"},
	{Name: "api-keys", Group: groupAuth, Type: List, Default: "", Secret: true,
		Help: "publisher API keys, name:secret or secret (default: HTTP publish from loopback only)"},
	{Name: "api-keys-file", Group: groupAuth, Type: String, Default: "",
		Help: "JSON file of publisher API keys, each with optional topic patterns and rate"},
	{Name: "hook-connect", Group: groupAuth, Type: String, Default: "",
		Help: "URL of the backend's connect hook: asked before each WebSocket upgrade (docs/HOOKS.md)"},
	{Name: "hook-subscribe", Group: groupAuth, Type: String, Default: "",
		Help: "URL of the backend's subscribe hook: asked for each client subscribe"},
	{Name: "hook-publish", Group: groupAuth, Type: String, Default: "",
		Help: "URL of the backend's publish hook: asked for each client publish, may replace its data"},
	{Name: "hook-refresh", Group: groupAuth, Type: String, Default: "",
		Help: "URL of the backend's refresh hook: asked for each refresh"},
	{Name: "hook-timeout", Group: groupAuth, Type: Duration, Default: "2s", Bound: Positive,
		Help: "bound on each hook call, its retries included; past it the client gets unavailable"},
	{Name: "hook-forward-headers", Group: groupAuth, Type: List, Default: "",
		Help: "request headers of the upgrade sent to the hooks (Cookie and Authorization only when listed)"},
	{Name: "hook-forward-cookies", Group: groupAuth, Type: List, Default: "",
		Help: "cookies of the upgrade sent to the hooks"},

	{Name: "trusted-proxies", Group: groupHTTP, Type: List, Default: "",
		Help: "reverse proxies whose X-Forwarded-For or Forwarded names the client: CIDRs, addresses, private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7), loopback (127.0.0.0/8, ::1), or none alone for no proxy (default, when empty: private)"},
	{Name: "handshake-timeout", Group: groupHTTP, Type: Duration, Default: "10s", Bound: Positive,
		Help: "time a connection has to send its request headers (the WebSocket upgrade)"},
	{Name: "read-timeout", Group: groupHTTP, Type: Duration, Default: "30s", Bound: Positive,
		Help: "time an HTTP request has to arrive whole, body included"},
	{Name: "write-timeout", Group: groupHTTP, Type: Duration, Default: "10s", Bound: Positive,
		Help: "how long a WebSocket write may wait while the client reads nothing, and bound on writing an HTTP response"},
	{Name: "max-header-bytes", Group: groupHTTP, Type: Int, Default: "16384", Bound: Positive,
		Help: "largest HTTP request header in bytes"},
	{Name: "http-idle-timeout", Group: groupHTTP, Type: Duration, Default: "15s", Bound: Positive,
		Help: "how long an HTTP keep-alive connection may wait idle for its next request before it is closed"},
	{Name: "http-ip-max-idle", Group: groupHTTP, Type: Int, Default: "64", Bound: NonNegative,
		Help: "idle HTTP keep-alive connections one peer address may hold (IPv6: one /64; trusted proxies exempt); beyond it a response says Connection: close and a connection that turns idle is closed (0: no limit)"},
	{Name: "max-conns", Group: groupHTTP, Type: Int, Default: "0", Bound: NonNegative,
		Help: "client connections the node holds at once, HTTP and WebSocket; the last eighth are kept for addresses that hold fewer than 8, and beyond it a new connection is closed at once (0: the open-file limit less a reserve of an eighth of it, at least 32 and at most 1024)"},
	{Name: "tls-cert", Group: groupHTTP, Type: String, Default: "",
		Help: "PEM certificate chain file: serve HTTPS and WSS (with -tls-key; reloaded on SIGHUP or change)"},
	{Name: "tls-key", Group: groupHTTP, Type: String, Default: "",
		Help: "PEM private key file of -tls-cert"},

	{Name: "presence", Group: groupControl, Type: Bool, Default: "false", Reload: true,
		Help: "keep the presence of every topic (who is subscribed, on every node) for GET /v1/presence and the presence ops (a namespace's presence overrides it)"},
	{Name: "join-leave", Group: groupControl, Type: Bool, Default: "false", Reload: true,
		Help: "send join and leave frames to every topic's subscribers when a session subscribes, unsubscribes or ends, on any node (a namespace's join_leave overrides it)"},
	{Name: "presence-ttl", Group: groupControl, Type: Duration, Default: "30s", Bound: Positive,
		Help: "how long a presence entry lives unless its node refreshes it (every third of it): how long the sessions of a node that died stay listed"},
	{Name: "revoke-for", Group: groupControl, Type: Duration, Default: "24h0m0s", Bound: Positive,
		Help: "how long a revocation without until lasts: the longest lifetime of the tokens you issue"},

	{Name: "log-level", Group: groupLogs, Type: String, Default: "info", Enum: []string{"debug", "info", "warn", "error"},
		Help: "log level: debug, info, warn or error"},
	{Name: "log-format", Group: groupLogs, Type: String, Default: "json", Enum: []string{"json", "text"},
		Help: "log format: json or text"},
	{Name: "pprof-addr", Group: groupLogs, Type: String, Default: "",
		Help: "serve net/http/pprof at /debug/pprof/ on this loopback host:port, apart from -addr (default: off)"},
}

// byName indexes options by name.
var byName = func() map[string]int {
	m := make(map[string]int, len(options))
	for i, o := range options {
		m[o.Name] = i
	}
	return m
}()

// Options returns every option of the broker, as Example lists them.
func Options() []Option {
	out := make([]Option, len(options))
	copy(out, options)
	return out
}

// Lookup returns the option named name.
func Lookup(name string) (Option, bool) {
	i, ok := byName[name]
	if !ok {
		return Option{}, false
	}
	return options[i], true
}

// Check checks value, the option's value as its flag takes it (a list's
// items joined by commas, a duration as time.ParseDuration reads it),
// against the option's type, Bound, Max and Enum: the one check of the
// file's values and of the broker's flags and variables. Its error says
// what is wrong, the value first ("0: must be more than zero").
func (o Option) Check(value string) error {
	switch o.Type {
	case Int, Float, Duration:
		n, show, err := o.number(value)
		if err != nil {
			return fmt.Errorf("%q: want %s", value, want(o.Type))
		}
		switch {
		case o.Type == Int && o.Max > 0 && n > float64(o.Max):
			return fmt.Errorf("%s: at most %d", show, o.Max)
		case o.Bound == Positive && n <= 0:
			return fmt.Errorf("%s: must be more than zero", show)
		case o.Bound == NonNegative && n < 0:
			return fmt.Errorf("%s: must not be negative (0: %s)", show, o.zeroMeaning())
		}
	case String:
		if len(o.Enum) == 0 {
			return nil
		}
		for _, e := range o.Enum {
			if strings.EqualFold(value, e) {
				return nil
			}
		}
		return fmt.Errorf("%q: want one of %s", value, strings.Join(o.Enum, ", "))
	}
	return nil
}

// number reads value, of a number type, and says how errors show it.
func (o Option) number(value string) (n float64, show string, err error) {
	switch o.Type {
	case Int:
		i, err := strconv.ParseInt(value, 10, 64)
		return float64(i), value, err
	case Float:
		f, err := strconv.ParseFloat(value, 64)
		return f, value, err
	}
	d, err := time.ParseDuration(value)
	return float64(d), d.String(), err
}

// zeroMeaning says what 0 means for a NonNegative option.
func (o Option) zeroMeaning() string {
	if o.Name == "max-conns" {
		return "from the open-file limit"
	}
	return "no limit"
}

// Usage is the option's help as its flag prints it: a List's flag takes
// its items comma-separated.
func (o Option) Usage() string {
	if o.Type == List {
		return "comma-separated " + o.Help
	}
	return o.Help
}

// optionRef is an option named in a Help, as its flag: a dash and the
// name, at the start or after a space or a parenthesis.
var optionRef = regexp.MustCompile(`(^|[\s(])-([a-z][a-z0-9-]*)`)

// fileHelp is the option's Help as the config file's comments give it:
// the options it names as keys, without their dash.
func (o Option) fileHelp() string {
	return optionRef.ReplaceAllStringFunc(o.Help, func(ref string) string {
		dash := strings.IndexByte(ref, '-')
		if _, ok := byName[ref[dash+1:]]; !ok {
			return ref
		}
		return ref[:dash] + ref[dash+1:]
	})
}
