package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/testcert"
	"github.com/tidings-io/tidings/store/memory"
	redisstore "github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
)

// flagCase is one flag of the command line: its default, and two valid
// values other than the default, one given by the environment and one on
// the command line, with what each reads back as.
type flagCase struct {
	name       string
	def        string // as -h prints it
	get        func(config) string
	wantDef    string // get() with no flag and no environment ("" when not fixed)
	envValue   string
	wantEnv    string
	flagValue  string
	wantFlag   string
	skipDefGet bool
	// with are arguments the flag needs to be valid (the Redis mode it
	// applies to, say), given in the env and flag forms alike.
	with []string
}

func str(v any) string { return fmt.Sprint(v) }

// flagCases lists the broker's flags with their env forms and defaults.
var flagCases = []flagCase{
	// -config needs a file: configfile_test.go has it.
	{name: "config", def: `""`, get: func(c config) string { return c.configFile }, wantDef: ""},
	{name: "addr", def: ":8080", get: func(c config) string { return c.addr }, wantDef: ":8080",
		envValue: "127.0.0.1:9001", wantEnv: "127.0.0.1:9001", flagValue: "127.0.0.1:9002", wantFlag: "127.0.0.1:9002"},
	{name: "node-id", def: `""`, get: func(c config) string { return c.nodeID }, skipDefGet: true,
		envValue: "node-from-env", wantEnv: "node-from-env", flagValue: "node-from-flag", wantFlag: "node-from-flag"},
	{name: "redis", def: `""`, get: func(c config) string { return c.redisURL }, wantDef: "",
		envValue: "redis://127.0.0.1:1/0", wantEnv: "redis://127.0.0.1:1/0", flagValue: "rediss://u:p@127.0.0.1:2/1", wantFlag: "rediss://u:p@127.0.0.1:2/1"},
	{name: "redis-cluster", def: `""`, get: func(c config) string { return str(c.redisCluster) }, wantDef: "[]",
		envValue: "127.0.0.1:7001,127.0.0.1:7002", wantEnv: "[127.0.0.1:7001 127.0.0.1:7002]", flagValue: "127.0.0.1:7003", wantFlag: "[127.0.0.1:7003]"},
	{name: "redis-sentinel", def: `""`, get: func(c config) string { return c.sentinelMaster + str(c.sentinelAddrs) }, wantDef: "[]",
		envValue: "m1@127.0.0.1:26379", wantEnv: "m1[127.0.0.1:26379]", flagValue: "m2@127.0.0.1:1,127.0.0.1:2", wantFlag: "m2[127.0.0.1:1 127.0.0.1:2]"},
	{name: "redis-timeout", def: "2s", get: func(c config) string { return str(c.redisTimeout) }, wantDef: "2s",
		envValue: "500ms", wantEnv: "500ms", flagValue: "3s", wantFlag: "3s"},
	{name: "redis-prefix", def: "tidings:", get: func(c config) string { return c.redisPrefix }, wantDef: "tidings:",
		envValue: "app1:", wantEnv: "app1:", flagValue: "app2:", wantFlag: "app2:"},
	// Redis credentials and TLS. The file flags need files:
	// TestRedisAuthFiles has them.
	{name: "redis-username", def: `""`, get: func(c config) string { return c.redisAuth.Username }, wantDef: "",
		envValue: "env-user", wantEnv: "env-user", flagValue: "flag-user", wantFlag: "flag-user", with: []string{"-redis", "redis://127.0.0.1:1"}},
	{name: "redis-password", def: `""`, get: func(c config) string { return c.redisAuth.Password }, wantDef: "",
		envValue: "env-pass", wantEnv: "env-pass", flagValue: "flag-pass", wantFlag: "flag-pass", with: []string{"-redis-cluster", "127.0.0.1:1"}},
	{name: "redis-password-file", def: `""`, get: func(c config) string { return c.redisPasswordFile }, wantDef: ""},
	{name: "redis-tls", def: "false", get: func(c config) string { return str(c.redisAuth.TLS != nil) }, wantDef: "false",
		envValue: "true", wantEnv: "true", flagValue: "true", wantFlag: "true", with: []string{"-redis", "redis://127.0.0.1:1"}},
	{name: "redis-tls-ca", def: `""`, get: func(c config) string { return c.redisTLSCA }, wantDef: ""},
	{name: "redis-tls-cert", def: `""`, get: func(c config) string { return c.redisTLSCert }, wantDef: ""},
	{name: "redis-tls-key", def: `""`, get: func(c config) string { return c.redisTLSKey }, wantDef: ""},
	{name: "redis-tls-server-name", def: `""`, get: func(c config) string { return c.redisAuth.TLS.ServerName }, skipDefGet: true,
		envValue: "redis.env.example", wantEnv: "redis.env.example", flagValue: "redis.flag.example", wantFlag: "redis.flag.example",
		with: []string{"-redis", "rediss://127.0.0.1:1"}},
	{name: "redis-tls-insecure-skip-verify", def: "false", get: func(c config) string { return str(c.redisAuth.TLS.InsecureSkipVerify) }, skipDefGet: true,
		envValue: "true", wantEnv: "true", flagValue: "true", wantFlag: "true", with: []string{"-redis", "redis://127.0.0.1:1", "-redis-tls"}},
	{name: "redis-sentinel-username", def: `""`, get: func(c config) string { return c.redisAuth.SentinelUsername }, wantDef: "",
		envValue: "env-sentry", wantEnv: "env-sentry", flagValue: "flag-sentry", wantFlag: "flag-sentry", with: []string{"-redis-sentinel", "m@127.0.0.1:1"}},
	{name: "redis-sentinel-password", def: `""`, get: func(c config) string { return c.redisAuth.SentinelPassword }, wantDef: "",
		envValue: "env-spass", wantEnv: "env-spass", flagValue: "flag-spass", wantFlag: "flag-spass", with: []string{"-redis-sentinel", "m@127.0.0.1:1"}},
	{name: "redis-sentinel-password-file", def: `""`, get: func(c config) string { return c.sentinelPasswordFile }, wantDef: ""},
	{name: "shutdown-timeout", def: "30s", get: func(c config) string { return str(c.shutdownTimeout) }, wantDef: "30s",
		envValue: "7s", wantEnv: "7s", flagValue: "1m", wantFlag: "1m0s"},
	{name: "api-keys", def: `""`, get: func(c config) string { return str(c.apiKeys) }, wantDef: "[]",
		envValue: "env-key-0001, env-key-0002", wantEnv: "[env-key-0001 env-key-0002]", flagValue: "flag-key-0001", wantFlag: "[flag-key-0001]"},
	{name: "allowed-origins", def: `""`, get: func(c config) string { return str(c.allowedOrigins) }, wantDef: "[]",
		envValue: "https://a.example,http://b.example:8080", wantEnv: "[https://a.example http://b.example:8080]", flagValue: "*", wantFlag: "[*]"},
	{name: "history-size", def: "100", get: func(c config) string { return str(c.historySize) }, wantDef: "100",
		envValue: "7", wantEnv: "7", flagValue: "8", wantFlag: "8"},
	{name: "history-ttl", def: "5m0s", get: func(c config) string { return str(c.historyTTL) }, wantDef: "5m0s",
		envValue: "90s", wantEnv: "1m30s", flagValue: "1h", wantFlag: "1h0m0s"},
	{name: "history-bytes", def: "268435456", get: func(c config) string { return str(c.historyBytes) }, wantDef: "268435456",
		envValue: "1000000", wantEnv: "1000000", flagValue: "2000000", wantFlag: "2000000"},
	{name: "outbound-bytes", def: "536870912", get: func(c config) string { return str(c.outboundBytes) }, wantDef: "536870912",
		envValue: "1000000", wantEnv: "1000000", flagValue: "2000000", wantFlag: "2000000"},
	{name: "public-hosts", def: `""`, get: func(c config) string { return str(c.publicHosts) }, wantDef: "[]",
		envValue: "a.example,b.example", wantEnv: "[a.example b.example]", flagValue: "c.example", wantFlag: "[c.example]"},
	{name: "idempotency-window", def: "5m0s", get: func(c config) string { return str(c.idemWindow) }, wantDef: "5m0s",
		envValue: "30s", wantEnv: "30s", flagValue: "10m", wantFlag: "10m0s"},
	{name: "max-message-size", def: "65536", get: func(c config) string { return str(c.maxMessageSize) }, wantDef: "65536",
		envValue: "1000", wantEnv: "1000", flagValue: "2000", wantFlag: "2000"},
	{name: "max-body-size", def: "1048576", get: func(c config) string { return str(c.maxBodySize) }, wantDef: "1048576",
		envValue: "3000", wantEnv: "3000", flagValue: "4000", wantFlag: "4000"},
	{name: "queue-size", def: "1024", get: func(c config) string { return str(c.queueSize) }, wantDef: "1024",
		envValue: "10", wantEnv: "10", flagValue: "11", wantFlag: "11"},
	{name: "queue-bytes", def: "4194304", get: func(c config) string { return str(c.queueBytes) }, wantDef: "4194304",
		envValue: "20000", wantEnv: "20000", flagValue: "30000", wantFlag: "30000"},
	{name: "presence", def: "false", get: func(c config) string { return str(c.presence) }, wantDef: "false",
		envValue: "true", wantEnv: "true", flagValue: "true", wantFlag: "true"},
	{name: "join-leave", def: "false", get: func(c config) string { return str(c.joinLeave) }, wantDef: "false",
		envValue: "true", wantEnv: "true", flagValue: "true", wantFlag: "true"},
	{name: "presence-ttl", def: "30s", get: func(c config) string { return str(c.presenceTTL) }, wantDef: "30s",
		envValue: "10s", wantEnv: "10s", flagValue: "1m", wantFlag: "1m0s"},
	{name: "revoke-for", def: "24h0m0s", get: func(c config) string { return str(c.revokeFor) }, wantDef: "24h0m0s",
		envValue: "1h", wantEnv: "1h0m0s", flagValue: "48h", wantFlag: "48h0m0s"},
	{name: "heartbeat", def: "25s", get: func(c config) string { return str(c.heartbeat) }, wantDef: "25s",
		envValue: "3s", wantEnv: "3s", flagValue: "4s", wantFlag: "4s"},
	{name: "shards", def: "64", get: func(c config) string { return str(c.shards) }, wantDef: "64",
		envValue: "8", wantEnv: "8", flagValue: "16", wantFlag: "16"},
	{name: "demo", def: "true", get: func(c config) string { return str(c.demo) }, wantDef: "true",
		envValue: "false", wantEnv: "false", flagValue: "false", wantFlag: "false"},
	{name: "log-level", def: "info", get: func(c config) string { return c.logLevel }, wantDef: "info",
		envValue: "debug", wantEnv: "debug", flagValue: "warn", wantFlag: "warn"},
	{name: "log-format", def: "json", get: func(c config) string { return c.logFormat }, wantDef: "json",
		envValue: "text", wantEnv: "text", flagValue: "json", wantFlag: "json"},
	{name: "ws-readers", def: "poll", get: func(c config) string { return c.wsReaders }, wantDef: "poll",
		envValue: "goroutine", wantEnv: "goroutine", flagValue: "poll", wantFlag: "poll"},
	{name: "ws-compression", def: "false", get: func(c config) string { return str(c.wsCompression) }, wantDef: "false",
		envValue: "true", wantEnv: "true", flagValue: "true", wantFlag: "true"},
	{name: "ws-compression-min-size", def: "256", get: func(c config) string { return str(c.wsCompressionMinSize) }, wantDef: "256",
		envValue: "1", wantEnv: "1", flagValue: "1024", wantFlag: "1024"},
	{name: "pprof-addr", def: `""`, get: func(c config) string { return c.pprofAddr }, wantDef: "",
		envValue: "127.0.0.1:0", wantEnv: "127.0.0.1:0", flagValue: "[::1]:6060", wantFlag: "[::1]:6060"},
	{name: "http-idle-timeout", def: "15s", get: func(c config) string { return str(c.httpIdleTimeout) }, wantDef: "15s",
		envValue: "3s", wantEnv: "3s", flagValue: "1m", wantFlag: "1m0s"},
	{name: "http-ip-max-idle", def: "64", get: func(c config) string { return str(c.httpIPMaxIdle) }, wantDef: "64",
		envValue: "10", wantEnv: "10", flagValue: "0", wantFlag: "0"},
	{name: "max-conns", def: "0", get: func(c config) string { return str(c.maxConns) }, wantDef: "0",
		envValue: "5000", wantEnv: "5000", flagValue: "100", wantFlag: "100"},
	// Authentication, limits, timeouts and TLS (security.go).
	{name: "jwt-key", def: `""`, get: func(c config) string { return c.jwtKey }, wantDef: "",
		envValue: "env-secret-0123456789abcdef0123456789", wantEnv: "env-secret-0123456789abcdef0123456789",
		flagValue: "flag-secret-0123456789abcdef012345678", wantFlag: "flag-secret-0123456789abcdef012345678"},
	{name: "jwt-public-key-file", def: `""`, get: func(c config) string { return c.jwtPublicKeyFile }, wantDef: "",
		envValue: "/etc/tidings/env.pem", wantEnv: "/etc/tidings/env.pem", flagValue: "flag.pem", wantFlag: "flag.pem"},
	{name: "jwt-jwks-url", def: `""`, get: func(c config) string { return c.jwtJWKSURL }, wantDef: "",
		envValue: "https://idp.example/env/jwks.json", wantEnv: "https://idp.example/env/jwks.json",
		flagValue: "http://127.0.0.1:9/jwks", wantFlag: "http://127.0.0.1:9/jwks"},
	{name: "jwt-audience", def: `""`, get: func(c config) string { return c.jwtAudience }, wantDef: "",
		envValue: "tidings-env", wantEnv: "tidings-env", flagValue: "tidings-flag", wantFlag: "tidings-flag"},
	{name: "jwt-issuer", def: `""`, get: func(c config) string { return c.jwtIssuer }, wantDef: "",
		envValue: "https://idp.example/env", wantEnv: "https://idp.example/env", flagValue: "issuer-flag", wantFlag: "issuer-flag"},
	{name: "jwt-leeway", def: "5s", get: func(c config) string { return str(c.jwtLeeway) }, wantDef: "5s",
		envValue: "2s", wantEnv: "2s", flagValue: "1m", wantFlag: "1m0s"},
	{name: "api-keys-file", def: `""`, get: func(c config) string { return c.apiKeysFile }, wantDef: "",
		envValue: "/etc/tidings/keys.json", wantEnv: "/etc/tidings/keys.json", flagValue: "keys.json", wantFlag: "keys.json"},
	{name: "publish-rate", def: "1000", get: func(c config) string { return str(c.publishRate) }, wantDef: "1000",
		envValue: "50", wantEnv: "50", flagValue: "0.5", wantFlag: "0.5"},
	{name: "hook-connect", def: `""`, get: func(c config) string { return c.hookConnect }, wantDef: "",
		envValue: "http://127.0.0.1:1/connect", wantEnv: "http://127.0.0.1:1/connect", flagValue: "https://backend.example/c", wantFlag: "https://backend.example/c"},
	{name: "hook-subscribe", def: `""`, get: func(c config) string { return c.hookSubscribe }, wantDef: "",
		envValue: "http://127.0.0.1:1/s", wantEnv: "http://127.0.0.1:1/s", flagValue: "http://127.0.0.1:2/s", wantFlag: "http://127.0.0.1:2/s"},
	{name: "hook-publish", def: `""`, get: func(c config) string { return c.hookPublish }, wantDef: "",
		envValue: "http://127.0.0.1:1/p", wantEnv: "http://127.0.0.1:1/p", flagValue: "http://127.0.0.1:2/p", wantFlag: "http://127.0.0.1:2/p"},
	{name: "hook-refresh", def: `""`, get: func(c config) string { return c.hookRefresh }, wantDef: "",
		envValue: "http://127.0.0.1:1/r", wantEnv: "http://127.0.0.1:1/r", flagValue: "http://127.0.0.1:2/r", wantFlag: "http://127.0.0.1:2/r"},
	{name: "hook-timeout", def: "2s", get: func(c config) string { return str(c.hookTimeout) }, wantDef: "2s",
		envValue: "500ms", wantEnv: "500ms", flagValue: "3s", wantFlag: "3s"},
	{name: "hook-forward-headers", def: `""`, get: func(c config) string { return c.hookForwardHeaders }, wantDef: "",
		envValue: "X-Tenant", wantEnv: "X-Tenant", flagValue: "Authorization,X-Tenant", wantFlag: "Authorization,X-Tenant"},
	{name: "hook-forward-cookies", def: `""`, get: func(c config) string { return c.hookForwardCookies }, wantDef: "",
		envValue: "sid", wantEnv: "sid", flagValue: "sid,csrf", wantFlag: "sid,csrf"},
	{name: "trusted-proxies", def: `""`, get: func(c config) string { return str(c.trustedProxies) }, wantDef: "[]",
		envValue: "10.0.0.0/8, 192.168.1.1", wantEnv: "[10.0.0.0/8 192.168.1.1]", flagValue: "fd00::/8", wantFlag: "[fd00::/8]"},
	{name: "max-sessions", def: "100000", get: func(c config) string { return str(c.maxSessions) }, wantDef: "100000",
		envValue: "500", wantEnv: "500", flagValue: "0", wantFlag: "0"},
	{name: "ip-conn-rate", def: "100", get: func(c config) string { return str(c.ipConnRate) }, wantDef: "100",
		envValue: "2.5", wantEnv: "2.5", flagValue: "0", wantFlag: "0"},
	{name: "ip-conn-burst", def: "1000", get: func(c config) string { return str(c.ipConnBurst) }, wantDef: "1000",
		envValue: "10", wantEnv: "10", flagValue: "20", wantFlag: "20"},
	{name: "ip-max-conns", def: "1000", get: func(c config) string { return str(c.ipMaxConns) }, wantDef: "1000",
		envValue: "30", wantEnv: "30", flagValue: "0", wantFlag: "0"},
	{name: "max-subscriptions", def: "1000", get: func(c config) string { return str(c.maxSubscriptions) }, wantDef: "1000",
		envValue: "40", wantEnv: "40", flagValue: "50", wantFlag: "50"},
	{name: "op-rate", def: "500", get: func(c config) string { return str(c.opRate) }, wantDef: "500",
		envValue: "60", wantEnv: "60", flagValue: "0", wantFlag: "0"},
	{name: "op-burst", def: "1000", get: func(c config) string { return str(c.opBurst) }, wantDef: "1000",
		envValue: "70", wantEnv: "70", flagValue: "80", wantFlag: "80"},
	{name: "handshake-timeout", def: "10s", get: func(c config) string { return str(c.handshakeTimeout) }, wantDef: "10s",
		envValue: "3s", wantEnv: "3s", flagValue: "500ms", wantFlag: "500ms"},
	{name: "read-timeout", def: "30s", get: func(c config) string { return str(c.readTimeout) }, wantDef: "30s",
		envValue: "20s", wantEnv: "20s", flagValue: "1m", wantFlag: "1m0s"},
	{name: "write-timeout", def: "10s", get: func(c config) string { return str(c.writeTimeout) }, wantDef: "10s",
		envValue: "4s", wantEnv: "4s", flagValue: "15s", wantFlag: "15s"},
	{name: "max-header-bytes", def: "16384", get: func(c config) string { return str(c.maxHeaderBytes) }, wantDef: "16384",
		envValue: "8192", wantEnv: "8192", flagValue: "32768", wantFlag: "32768"},
	{name: "tls-cert", def: `""`, get: func(c config) string { return c.tlsCert }, wantDef: "",
		envValue: "/etc/tidings/env.crt", wantEnv: "/etc/tidings/env.crt", flagValue: "flag.crt", wantFlag: "flag.crt"},
	{name: "tls-key", def: `""`, get: func(c config) string { return c.tlsKey }, wantDef: "",
		envValue: "/etc/tidings/env.key", wantEnv: "/etc/tidings/env.key", flagValue: "flag.key", wantFlag: "flag.key"},
}

// forEachValueCase runs check on each flag case with an envValue, in a
// parallel subtest named after the flag.
func forEachValueCase(t *testing.T, check func(t *testing.T, fc flagCase)) {
	t.Helper()
	for _, fc := range flagCases {
		if fc.envValue == "" {
			continue
		}
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			check(t, fc)
		})
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"addr":             "TIDINGS_ADDR",
		"node-id":          "TIDINGS_NODE_ID",
		"shutdown-timeout": "TIDINGS_SHUTDOWN_TIMEOUT",
		"max-message-size": "TIDINGS_MAX_MESSAGE_SIZE",
	} {
		if got := envName(name); got != want {
			t.Errorf("envName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, noEnv, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseConfig with no flags: %v", err)
	}
	for _, fc := range flagCases {
		if fc.skipDefGet {
			continue
		}
		if got := fc.get(c); got != fc.wantDef {
			t.Errorf("-%s defaults to %q, want %q", fc.name, got, fc.wantDef)
		}
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "tidings"
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(host) + `-[0-9a-f]{6}$`).MatchString(c.nodeID) {
		t.Errorf("default node id %q, want %q and a short random suffix", c.nodeID, host)
	}
}

func TestConfigEnvForm(t *testing.T) {
	t.Parallel()
	forEachValueCase(t, func(t *testing.T, fc flagCase) {
		env := map[string]string{envName(fc.name): fc.envValue}
		c, err := parseConfig(fc.with, envOf(env), &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%s=%q: %v", envName(fc.name), fc.envValue, err)
		}
		if got := fc.get(c); got != fc.wantEnv {
			t.Errorf("%s=%q reads as %q, want %q", envName(fc.name), fc.envValue, got, fc.wantEnv)
		}
	})
}

func TestConfigFlagWinsOverEnv(t *testing.T) {
	t.Parallel()
	forEachValueCase(t, func(t *testing.T, fc flagCase) {
		env := map[string]string{envName(fc.name): fc.envValue}
		forms := [][]string{
			{"-" + fc.name + "=" + fc.flagValue},
			{"--" + fc.name + "=" + fc.flagValue},
		}
		if fc.def != "true" && fc.def != "false" { // a boolean flag takes its value only after '='
			forms = append(forms, []string{"-" + fc.name, fc.flagValue}, []string{"--" + fc.name, fc.flagValue})
		}
		for _, args := range forms {
			args = append(slices.Clone(fc.with), args...)
			c, err := parseConfig(args, envOf(env), &bytes.Buffer{})
			if err != nil {
				t.Fatalf("%v with %s=%q: %v", args, envName(fc.name), fc.envValue, err)
			}
			if got := fc.get(c); got != fc.wantFlag {
				t.Errorf("%v with %s=%q reads as %q, want the flag's %q", args, envName(fc.name), fc.envValue, got, fc.wantFlag)
			}
		}
	})
}

// TestConfigEnvPerFlag checks that one flag on the command line does not
// stop the environment from setting the others, and that an empty
// variable counts as unset.
func TestConfigEnvPerFlag(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TIDINGS_HISTORY_SIZE": "5",
		"TIDINGS_QUEUE_SIZE":   "6",
		"TIDINGS_SHARDS":       "",
	}
	c, err := parseConfig([]string{"-history-size", "9"}, envOf(env), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.historySize != 9 || c.queueSize != 6 || c.shards != 64 {
		t.Errorf("history-size %d, queue-size %d, shards %d; want 9 (flag), 6 (env), 64 (empty env = default)", c.historySize, c.queueSize, c.shards)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{arg}, noEnv, &stdout)
			if code := exitCode(err, &stderr); code != 0 {
				t.Errorf("%s: exit code %d (err %v), want 0", arg, code, err)
			}
			if stderr.Len() != 0 {
				t.Errorf("%s wrote to stderr: %q", arg, stderr.String())
			}
			out := stdout.String()
			listed := map[string]bool{}
			for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z-]+)\b`).FindAllStringSubmatch(out, -1) {
				listed[m[1]] = true
			}
			for _, fc := range flagCases {
				want := fmt.Sprintf("-%s (env %s, default %s)", fc.name, envName(fc.name), fc.def)
				if !strings.Contains(out, want) {
					t.Errorf("%s output lacks %q", arg, want)
				}
				delete(listed, fc.name)
			}
			if !strings.Contains(out, "  -version\n") {
				t.Errorf("%s output lacks -version", arg)
			}
			delete(listed, "version")
			for name := range listed {
				t.Errorf("%s lists -%s, which this test does not know: add it to flagCases", arg, name)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// -version prints the stamped version alone and exits 0, whatever else
// is set; TIDINGS_VERSION is no setting and starts nothing.
func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-version"}, everyVarX{}, &stdout)
	if code := exitCode(err, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit code %d, stderr %q (err %v), want 0 and nothing", code, stderr.String(), err)
	}
	if got := stdout.String(); got != version+"\n" {
		t.Errorf("-version printed %q, want %q", got, version+"\n")
	}
	c, err := parseConfig(nil, envOf(map[string]string{"TIDINGS_VERSION": "true"}), io.Discard)
	if err != nil || c.fromEnv["version"] != "" {
		t.Errorf("TIDINGS_VERSION=true: err %v, from env %v; want a normal start", err, c.fromEnv)
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err        error
		want       int
		wantStderr string
	}{
		{nil, 0, ""},
		{errHelp, 0, ""},
		{usageError{"invalid value for flag -x: bad"}, 2, "broker: invalid value for flag -x: bad\n"},
		{fmt.Errorf("serving: %w", errors.New("boom")), 1, "broker: serving: boom\n"},
	} {
		var stderr bytes.Buffer
		if got := exitCode(tc.err, &stderr); got != tc.want || stderr.String() != tc.wantStderr {
			t.Errorf("exitCode(%v) = %d, stderr %q; want %d, %q", tc.err, got, stderr.String(), tc.want, tc.wantStderr)
		}
	}
}

// TestInvalidValues runs the broker with each invalid value: it must exit 2
// with one line on stderr that names the flag (and the variable, when the
// value came from the environment).
func TestInvalidValues(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	busy := taken.Addr().String()

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the stderr line
	}{
		{"bad duration", []string{"-shutdown-timeout", "soon"}, nil, []string{"-shutdown-timeout", `"soon"`}},
		{"duration without unit", []string{"-history-ttl", "5"}, nil, []string{"-history-ttl"}},
		{"bad heartbeat", []string{"-heartbeat", "1x"}, nil, []string{"-heartbeat"}},
		{"zero shutdown timeout", []string{"-shutdown-timeout", "0s"}, nil, []string{"-shutdown-timeout", "more than zero"}},
		{"negative heartbeat", []string{"-heartbeat", "-1s"}, nil, []string{"-heartbeat", "more than zero"}},
		{"negative history ttl", []string{"-history-ttl", "-5m"}, nil, []string{"-history-ttl", "more than zero"}},
		{"zero presence ttl", []string{"-presence-ttl", "0s"}, nil, []string{"-presence-ttl", "more than zero"}},
		{"negative revoke-for", []string{"-revoke-for", "-1h"}, nil, []string{"-revoke-for", "more than zero"}},
		{"bad presence", []string{"-presence=maybe"}, nil, []string{"-presence"}},
		{"zero idempotency window", []string{"-idempotency-window", "0s"}, nil, []string{"-idempotency-window", "more than zero"}},
		{"zero history bytes", []string{"-history-bytes", "0"}, nil, []string{"-history-bytes", "more than zero"}},
		{"negative outbound bytes", nil, map[string]string{"TIDINGS_OUTBOUND_BYTES": "-1"}, []string{"-outbound-bytes", "TIDINGS_OUTBOUND_BYTES"}},
		{"bad idempotency window", nil, map[string]string{"TIDINGS_IDEMPOTENCY_WINDOW": "forever"}, []string{"-idempotency-window", "TIDINGS_IDEMPOTENCY_WINDOW"}},
		{"negative history size", []string{"-history-size", "-1"}, nil, []string{"-history-size", "more than zero"}},
		{"zero history size", []string{"-history-size", "0"}, nil, []string{"-history-size", "more than zero"}},
		{"zero max message size", []string{"-max-message-size", "0"}, nil, []string{"-max-message-size", "more than zero"}},
		{"negative max body size", []string{"-max-body-size", "-5"}, nil, []string{"-max-body-size", "more than zero"}},
		{"zero queue size", []string{"-queue-size", "0"}, nil, []string{"-queue-size", "more than zero"}},
		{"negative queue bytes", []string{"-queue-bytes", "-1"}, nil, []string{"-queue-bytes", "more than zero"}},
		{"zero shards", []string{"-shards", "0"}, nil, []string{"-shards", "more than zero"}},
		{"too many shards", []string{"-shards", "70000"}, nil, []string{"-shards", "65536"}},
		{"size not a number", []string{"-queue-size", "ten"}, nil, []string{"-queue-size", `"ten"`}},
		{"size overflows", []string{"-max-body-size", "99999999999999999999"}, nil, []string{"-max-body-size"}},
		{"unknown log level", []string{"-log-level", "verbose"}, nil, []string{"-log-level", "verbose"}},
		{"unknown log format", []string{"-log-format", "xml"}, nil, []string{"-log-format", "xml"}},
		{"unknown ws readers", []string{"-ws-readers", "threads"}, nil, []string{"-ws-readers", "threads", "want one of poll, goroutine"}},
		{"address in use", []string{"-addr", busy}, nil, []string{"-addr", busy}},
		{"address without port", []string{"-addr", "127.0.0.1"}, nil, []string{"-addr"}},
		{"address not local", []string{"-addr", "192.0.2.1:0"}, nil, []string{"-addr"}},
		{"redis not a URL", []string{"-redis", "localhost:6379"}, nil, []string{"-redis", "redis://"}},
		{"redis wrong scheme", []string{"-redis", "http://u:secret@localhost:6379"}, nil, []string{"-redis", "http://u:xxxxx@localhost:6379"}},
		{"redis and cluster", []string{"-redis", "redis://127.0.0.1:1", "-redis-cluster", "127.0.0.1:2"}, nil, []string{"-redis-cluster", "not both"}},
		{"cluster address without port", []string{"-redis-cluster", "127.0.0.1"}, nil, []string{"-redis-cluster", `"127.0.0.1"`}},
		{"sentinel without master", []string{"-redis-sentinel", "@127.0.0.1:26379"}, nil, []string{"-redis-sentinel", "master@"}},
		{"sentinel without addresses", []string{"-redis-sentinel", "mymaster"}, nil, []string{"-redis-sentinel", "master@"}},
		{"sentinel and url", []string{"-redis-sentinel", "m@127.0.0.1:1", "-redis", "redis://127.0.0.1:2"}, nil, []string{"-redis-sentinel", "only"}},
		{"zero redis timeout", []string{"-redis-timeout", "0s"}, nil, []string{"-redis-timeout", "more than zero"}},
		{"empty redis prefix", []string{"-redis-prefix", ""}, nil, []string{"-redis-prefix", "empty"}},
		{"bad origin", []string{"-allowed-origins", "example.com"}, nil, []string{"-allowed-origins", "example.com"}},
		{"short api key", []string{"-api-keys", "short"}, nil, []string{"-api-keys"}},
		{"short named api key", []string{"-api-keys", "billing:short"}, nil, []string{"-api-keys", "billing", "8 characters"}},
		{"bad api key name", []string{"-api-keys", "bad name:0123456789"}, nil, []string{"-api-keys", "bad name"}},
		{"duplicate api key name", []string{"-api-keys", "a:0123456789,a:9876543210"}, nil, []string{"-api-keys", "twice"}},
		{"short jwt key", []string{"-jwt-key", "0123456789abcdef"}, nil, []string{"-jwt-key", "16 bytes", "32"}},
		{"two jwt keys", []string{"-jwt-key", strings.Repeat("k", 32), "-jwt-jwks-url", "https://idp.example/jwks"}, nil, []string{"-jwt-key", "one of"}},
		{"jwks url not http", []string{"-jwt-jwks-url", "ftp://idp.example/jwks"}, nil, []string{"-jwt-jwks-url", "ftp://"}},
		{"public key file missing", []string{"-jwt-public-key-file", "/nonexistent/jwt.pem"}, nil, []string{"-jwt-public-key-file", "/nonexistent/jwt.pem"}},
		{"audience without a key", []string{"-jwt-audience", "tidings"}, nil, []string{"-jwt-audience", "-jwt-key"}},
		{"zero jwt leeway", []string{"-jwt-leeway", "0s"}, nil, []string{"-jwt-leeway", "more than zero"}},
		{"api keys file missing", []string{"-api-keys-file", "/nonexistent/keys.json"}, nil, []string{"-api-keys-file", "/nonexistent/keys.json"}},
		{"negative publish rate", []string{"-publish-rate", "-1"}, nil, []string{"-publish-rate", "negative"}},
		{"bad trusted proxy", []string{"-trusted-proxies", "10.0.0.0/8,proxy.local"}, nil, []string{"-trusted-proxies", "proxy.local"}},
		{"negative max sessions", []string{"-max-sessions", "-1"}, nil, []string{"-max-sessions", "negative"}},
		{"negative ip conn rate", []string{"-ip-conn-rate", "-2"}, nil, []string{"-ip-conn-rate", "negative"}},
		{"zero ip conn burst", []string{"-ip-conn-burst", "0"}, nil, []string{"-ip-conn-burst", "more than zero"}},
		{"negative ip max conns", []string{"-ip-max-conns", "-1"}, nil, []string{"-ip-max-conns", "negative"}},
		{"zero max subscriptions", []string{"-max-subscriptions", "0"}, nil, []string{"-max-subscriptions", "more than zero"}},
		{"negative op rate", []string{"-op-rate", "-1"}, nil, []string{"-op-rate", "negative"}},
		{"zero op burst", []string{"-op-burst", "0"}, nil, []string{"-op-burst", "more than zero"}},
		{"zero handshake timeout", []string{"-handshake-timeout", "0s"}, nil, []string{"-handshake-timeout", "more than zero"}},
		{"zero read timeout", []string{"-read-timeout", "0s"}, nil, []string{"-read-timeout", "more than zero"}},
		{"negative write timeout", []string{"-write-timeout", "-1s"}, nil, []string{"-write-timeout", "more than zero"}},
		{"zero max header bytes", []string{"-max-header-bytes", "0"}, nil, []string{"-max-header-bytes", "more than zero"}},
		{"zero http idle timeout", []string{"-http-idle-timeout", "0s"}, nil, []string{"-http-idle-timeout", "more than zero"}},
		{"negative http ip max idle", []string{"-http-ip-max-idle", "-1"}, nil, []string{"-http-ip-max-idle", "negative"}},
		{"env negative max conns", nil, map[string]string{"TIDINGS_MAX_CONNS": "-5"}, []string{"-max-conns", "TIDINGS_MAX_CONNS", "negative"}},
		{"tls cert without key", []string{"-tls-cert", "/nonexistent/c.pem"}, nil, []string{"-tls-cert", "together"}},
		{"tls files missing", []string{"-tls-cert", "/nonexistent/c.pem", "-tls-key", "/nonexistent/k.pem"}, nil, []string{"-tls-cert", "/nonexistent/c.pem"}},
		{"origin pattern with inner wildcard", []string{"-allowed-origins", "https://app.*.example.com"}, nil, []string{"-allowed-origins", "app.*.example.com"}},
		{"env short jwt key", nil, map[string]string{"TIDINGS_JWT_KEY": "too-short"}, []string{"-jwt-key", "TIDINGS_JWT_KEY"}},
		{"env bad trusted proxy", nil, map[string]string{"TIDINGS_TRUSTED_PROXIES": "x"}, []string{"-trusted-proxies", "TIDINGS_TRUSTED_PROXIES"}},
		{"pprof on every interface", []string{"-pprof-addr", "0.0.0.0:6060"}, nil, []string{"-pprof-addr", "0.0.0.0", "loopback only"}},
		{"pprof without host", []string{"-pprof-addr", ":6060"}, nil, []string{"-pprof-addr", `":6060"`, "loopback only"}},
		{"pprof on a private address", []string{"-pprof-addr", "10.1.2.3:6060"}, nil, []string{"-pprof-addr", "10.1.2.3", "loopback only"}},
		{"pprof on a public address", []string{"-pprof-addr", "192.0.2.1:6060"}, nil, []string{"-pprof-addr", "192.0.2.1", "loopback only"}},
		{"pprof on IPv6 any", []string{"-pprof-addr", "[::]:6060"}, nil, []string{"-pprof-addr", "loopback only"}},
		{"pprof on a hostname", []string{"-pprof-addr", "example.com:6060"}, nil, []string{"-pprof-addr", "example.com", "loopback only"}},
		{"pprof not an address", []string{"-pprof-addr", "nonsense"}, nil, []string{"-pprof-addr", `"nonsense"`, "loopback only"}},
		{"pprof without port", []string{"-pprof-addr", "127.0.0.1"}, nil, []string{"-pprof-addr", "loopback only"}},
		{"pprof empty port", []string{"-pprof-addr", "127.0.0.1:"}, nil, []string{"-pprof-addr", "loopback only"}},
		{"pprof port out of range", []string{"-pprof-addr", "127.0.0.1:70000"}, nil, []string{"-pprof-addr", "70000"}},
		{"pprof named port", []string{"-pprof-addr", "localhost:http"}, nil, []string{"-pprof-addr", `"http"`}},
		{"pprof address in use", []string{"-pprof-addr", busy}, nil, []string{"-pprof-addr", busy}},
		{"env pprof on every interface", nil, map[string]string{"TIDINGS_PPROF_ADDR": "0.0.0.0:6060"}, []string{"-pprof-addr", "TIDINGS_PPROF_ADDR", "loopback only"}},
		{"env pprof without host", nil, map[string]string{"TIDINGS_PPROF_ADDR": ":6060"}, []string{"-pprof-addr", "TIDINGS_PPROF_ADDR", "loopback only"}},
		{"env pprof on a private address", nil, map[string]string{"TIDINGS_PPROF_ADDR": "10.1.2.3:6060"}, []string{"-pprof-addr", "TIDINGS_PPROF_ADDR", "loopback only"}},
		{"env pprof on a hostname", nil, map[string]string{"TIDINGS_PPROF_ADDR": "example.com:6060"}, []string{"-pprof-addr", "TIDINGS_PPROF_ADDR", "loopback only"}},
		{"env pprof not an address", nil, map[string]string{"TIDINGS_PPROF_ADDR": "nonsense"}, []string{"-pprof-addr", "TIDINGS_PPROF_ADDR", "loopback only"}},
		{"env pprof address in use", nil, map[string]string{"TIDINGS_PPROF_ADDR": busy}, []string{"-pprof-addr", "TIDINGS_PPROF_ADDR", busy}},
		{"flag without value", []string{"-addr"}, nil, []string{"-addr"}},
		{"unknown flag", []string{"-verbose"}, nil, []string{"-verbose"}},
		{"positional argument", []string{"serve"}, nil, []string{`"serve"`}},
		{"positional after flags", []string{"-shards", "8", "extra"}, nil, []string{`"extra"`}},

		{"env bad duration", nil, map[string]string{"TIDINGS_SHUTDOWN_TIMEOUT": "soon"}, []string{"-shutdown-timeout", "TIDINGS_SHUTDOWN_TIMEOUT", `"soon"`}},
		{"env size not a number", nil, map[string]string{"TIDINGS_QUEUE_BYTES": "4MB"}, []string{"-queue-bytes", "TIDINGS_QUEUE_BYTES"}},
		{"env negative size", nil, map[string]string{"TIDINGS_HISTORY_SIZE": "-1"}, []string{"-history-size", "TIDINGS_HISTORY_SIZE"}},
		{"env zero heartbeat", nil, map[string]string{"TIDINGS_HEARTBEAT": "0s"}, []string{"-heartbeat", "TIDINGS_HEARTBEAT"}},
		{"env unknown log level", nil, map[string]string{"TIDINGS_LOG_LEVEL": "loud"}, []string{"-log-level", "TIDINGS_LOG_LEVEL", "loud"}},
		{"env unknown log format", nil, map[string]string{"TIDINGS_LOG_FORMAT": "yaml"}, []string{"-log-format", "TIDINGS_LOG_FORMAT", "yaml"}},
		{"env empty ws readers", nil, map[string]string{"TIDINGS_WS_READERS": " "}, []string{"-ws-readers", "TIDINGS_WS_READERS"}},
		{"env address in use", nil, map[string]string{"TIDINGS_ADDR": busy}, []string{"-addr", "TIDINGS_ADDR", busy}},
		{"env redis", nil, map[string]string{"TIDINGS_REDIS": "tcp://127.0.0.1:6379"}, []string{"-redis", "TIDINGS_REDIS"}},
		{"env bad origin", nil, map[string]string{"TIDINGS_ALLOWED_ORIGINS": "ftp://x"}, []string{"-allowed-origins", "TIDINGS_ALLOWED_ORIGINS"}},
		{"valid flag, invalid env for another", []string{"-shards", "8"}, map[string]string{"TIDINGS_QUEUE_SIZE": "-3"}, []string{"-queue-size", "TIDINGS_QUEUE_SIZE"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if tc.env["TIDINGS_ADDR"] == "" && !hasFlag(args, "-addr") {
				// Should the value wrongly be accepted, the broker must not
				// take a shared port; the cancelled context stops it at once.
				args = append([]string{"-addr", "127.0.0.1:0"}, args...)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, args, envOf(tc.env), &stdout)
			code := exitCode(err, &stderr)
			if code != 2 {
				t.Fatalf("args %q env %v: exit code %d (err %v), want 2", args, tc.env, code, err)
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || !strings.HasPrefix(line, "broker: ") {
				t.Errorf("stderr is %q, want one line starting with \"broker: \"", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not mention %q", line, w)
				}
			}
			if strings.Contains(stdout.String(), `"msg":"listening"`) {
				t.Errorf("the broker started listening despite the invalid value")
			}
		})
	}
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// TestRunUsesEnvironment starts the broker configured only from the
// environment, then with a flag that overrides it, and checks what a
// client sees.
func TestRunUsesEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TIDINGS_ADDR":      "127.0.0.1:0",
		"TIDINGS_NODE_ID":   "node-from-env",
		"TIDINGS_HEARTBEAT": "7s",
		"TIDINGS_LOG_LEVEL": "debug",
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantNode string
	}{
		{"env only", nil, "node-from-env"},
		{"flag wins", []string{"-node-id", "node-from-flag"}, "node-from-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, env, tc.args...)
			rec, err := n.log.waitRecord("listening", time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rec["node"] != tc.wantNode {
				t.Errorf("listening line node %v, want %q", rec["node"], tc.wantNode)
			}
			deadline := time.Now().Add(10 * time.Second)
			_, w := openSession(t, n.addr, deadline)
			if w.Node != tc.wantNode || w.Heartbeat != 7 {
				t.Errorf("welcome node %q heartbeat %v, want %q and 7 (TIDINGS_HEARTBEAT=7s)", w.Node, w.Heartbeat, tc.wantNode)
			}
			// TIDINGS_LOG_LEVEL=debug: session events are logged.
			if _, err := n.log.waitRecord("session open", 10*time.Second, n.done); err != nil {
				t.Errorf("with TIDINGS_LOG_LEVEL=debug: %v", err)
			}
		})
	}
}

// TestFlagDefaultsArePackageDefaults: the flags that feed the broker, the
// stores and the HTTP API default to those packages' own defaults, so that
// a node run with no flags behaves as the packages do with a zero Config.
func TestFlagDefaultsArePackageDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, noEnv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag      string
		got, want any
	}{
		{"shards", c.shards, broker.DefaultShards},
		{"queue-size", c.queueSize, broker.DefaultQueueSize},
		{"queue-bytes", c.queueBytes, broker.DefaultQueueBytes},
		{"outbound-bytes", c.outboundBytes, int64(broker.DefaultOutboundBytes)},
		{"max-subscriptions", c.maxSubscriptions, broker.DefaultMaxSubscriptions},
		{"history-size", c.historySize, memory.DefaultHistorySize},
		{"history-ttl", c.historyTTL, memory.DefaultHistoryTTL},
		{"history-bytes", c.historyBytes, int64(memory.DefaultHistoryBytes)},
		{"idempotency-window", c.idemWindow, memory.DefaultIdempotencyWindow},
		{"redis-timeout", c.redisTimeout, redisstore.DefaultTimeout},
		{"presence-ttl", c.presenceTTL, ctlnode.DefaultPresenceTTL},
		{"revoke-for", c.revokeFor, ctlnode.DefaultRevokeFor},
		{"redis-prefix", c.redisPrefix, redisstore.DefaultPrefix},
		{"max-body-size", c.maxBodySize, httpapi.DefaultMaxBodySize},
		{"publish-rate", c.publishRate, float64(httpapi.DefaultPublishRate)},
		{"max-message-size", c.maxMessageSize, ws.DefaultMaxMessageSize},
		{"heartbeat", c.heartbeat, ws.DefaultHeartbeat},
		{"max-sessions", c.maxSessions, ws.DefaultMaxSessions},
		{"ip-conn-rate", c.ipConnRate, float64(ws.DefaultIPConnRate)},
		{"ip-conn-burst", c.ipConnBurst, ws.DefaultIPConnBurst},
		{"ip-max-conns", c.ipMaxConns, ws.DefaultIPMaxConns},
		{"op-rate", c.opRate, float64(ws.DefaultOpRate)},
		{"op-burst", c.opBurst, ws.DefaultOpBurst},
		{"write-timeout", c.writeTimeout, ws.DefaultWriteTimeout},
	} {
		if tc.got != tc.want {
			t.Errorf("-%s defaults to %v, want the package's %v", tc.flag, tc.got, tc.want)
		}
	}
}

// TestStoreDefaultsAgree: -history-size, -history-ttl and
// -idempotency-window feed either store and take the in-memory store's
// defaults, which must be the Redis store's too.
func TestStoreDefaultsAgree(t *testing.T) {
	t.Parallel()
	if memory.DefaultHistorySize != redisstore.DefaultHistorySize ||
		memory.DefaultHistoryTTL != redisstore.DefaultHistoryTTL ||
		memory.DefaultIdempotencyWindow != redisstore.DefaultIdempotencyWindow {
		t.Errorf("memory defaults history %d, %v, idempotency %v; redis %d, %v, %v: want them equal",
			memory.DefaultHistorySize, memory.DefaultHistoryTTL, memory.DefaultIdempotencyWindow,
			redisstore.DefaultHistorySize, redisstore.DefaultHistoryTTL, redisstore.DefaultIdempotencyWindow)
	}
}

// TestInvalidRedisAuth runs the broker with each invalid Redis credential
// or TLS setting: it must exit 2 with one line on stderr that names the
// flag (and the variable, when the value came from the environment) and
// never shows a password.
func TestInvalidRedisAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, dir)
	certFile, keyFile := ca.Issue("client")
	_, otherKey := ca.Issue("other")
	notPEM := filepath.Join(dir, "not.pem")
	empty := filepath.Join(dir, "empty")
	for name, body := range map[string]string{notPEM: "hello", empty: "\n"} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const url = "redis://127.0.0.1:1"
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the stderr line
	}{
		{"password without redis", []string{"-redis-password", "pw-secret-1"}, nil, []string{"-redis-password", "-redis,"}},
		{"env password without redis", nil, map[string]string{"TIDINGS_REDIS_PASSWORD": "pw-secret-1"}, []string{"-redis-password", "TIDINGS_REDIS_PASSWORD", "not in use"}},
		{"username without redis", []string{"-redis-username", "alice"}, nil, []string{"-redis-username", "not in use"}},
		{"tls without redis", []string{"-redis-tls"}, nil, []string{"-redis-tls", "not in use"}},
		{"password and password file", []string{"-redis", url, "-redis-password", "pw-secret-1", "-redis-password-file", empty}, nil, []string{"-redis-password", "not both"}},
		{"password in the URL and the flag", []string{"-redis", "redis://:pw-secret-2@127.0.0.1:1", "-redis-password", "pw-secret-1"}, nil, []string{"-redis-password", "URL has a password"}},
		{"env password in the URL and the variable", nil, map[string]string{"TIDINGS_REDIS": "rediss://u:pw-secret-2@127.0.0.1:1", "TIDINGS_REDIS_PASSWORD": "pw-secret-1"},
			[]string{"-redis-password", "TIDINGS_REDIS_PASSWORD", "give it once"}},
		{"password in the URL and a file", []string{"-redis", "redis://:pw-secret-2@127.0.0.1:1", "-redis-password-file", empty}, nil, []string{"-redis-password", "URL has a password"}},
		{"username in the URL and the flag", []string{"-redis", "redis://bob@127.0.0.1:1", "-redis-username", "alice"}, nil, []string{"-redis-username", "username too"}},
		{"sentinel password without sentinel", []string{"-redis", url, "-redis-sentinel-password", "pw-secret-1"}, nil, []string{"-redis-sentinel-password", "only for -redis-sentinel"}},
		{"sentinel username without sentinel", []string{"-redis-cluster", "127.0.0.1:1", "-redis-sentinel-username", "sentry"}, nil, []string{"-redis-sentinel-username", "only for -redis-sentinel"}},
		{"sentinel password file without sentinel", []string{"-redis", url, "-redis-sentinel-password-file", empty}, nil, []string{"-redis-sentinel-password-file", "only for -redis-sentinel"}},
		{"sentinel password and file", []string{"-redis-sentinel", "m@127.0.0.1:1", "-redis-sentinel-password", "pw-secret-1", "-redis-sentinel-password-file", empty}, nil,
			[]string{"-redis-sentinel-password", "not both"}},
		{"tls ca without tls", []string{"-redis", url, "-redis-tls-ca", ca.CertFile}, nil, []string{"-redis-tls-ca", "give -redis-tls"}},
		{"env tls ca without tls", nil, map[string]string{"TIDINGS_REDIS": url, "TIDINGS_REDIS_TLS_CA": ca.CertFile}, []string{"-redis-tls-ca", "TIDINGS_REDIS_TLS_CA", "TLS is off"}},
		{"tls cert without tls", []string{"-redis", url, "-redis-tls-cert", certFile, "-redis-tls-key", keyFile}, nil, []string{"-redis-tls-cert", "give -redis-tls"}},
		{"tls server name without tls", []string{"-redis-cluster", "127.0.0.1:1", "-redis-tls-server-name", "redis.example"}, nil, []string{"-redis-tls-server-name", "TLS is off"}},
		{"insecure skip verify without tls", []string{"-redis", url, "-redis-tls-insecure-skip-verify"}, nil, []string{"-redis-tls-insecure-skip-verify", "TLS is off"}},
		{"tls cert without key", []string{"-redis", url, "-redis-tls", "-redis-tls-cert", certFile}, nil, []string{"-redis-tls-cert", "together"}},
		{"tls key without cert", []string{"-redis", "rediss://127.0.0.1:1", "-redis-tls-key", keyFile}, nil, []string{"-redis-tls-cert", "together"}},
		{"unreadable tls ca", []string{"-redis", url, "-redis-tls", "-redis-tls-ca", filepath.Join(dir, "missing.crt")}, nil, []string{"-redis-tls-ca", "missing.crt"}},
		{"tls ca not PEM", []string{"-redis", url, "-redis-tls", "-redis-tls-ca", notPEM}, nil, []string{"-redis-tls-ca", "no PEM certificate"}},
		{"tls key of another certificate", []string{"-redis", url, "-redis-tls", "-redis-tls-cert", certFile, "-redis-tls-key", otherKey}, nil, []string{"-redis-tls-cert", "client certificate"}},
		{"unreadable tls cert", []string{"-redis", url, "-redis-tls", "-redis-tls-cert", filepath.Join(dir, "gone.crt"), "-redis-tls-key", keyFile}, nil, []string{"-redis-tls-cert", "gone.crt"}},
		{"insecure with a ca", []string{"-redis", url, "-redis-tls", "-redis-tls-ca", ca.CertFile, "-redis-tls-insecure-skip-verify"}, nil, []string{"-redis-tls-insecure-skip-verify", "-redis-tls-ca"}},
		{"missing password file", []string{"-redis", url, "-redis-password-file", filepath.Join(dir, "nope")}, nil, []string{"-redis-password-file", "nope"}},
		{"empty password file", []string{"-redis", url, "-redis-password-file", empty}, nil, []string{"-redis-password-file", "empty"}},
		{"env empty sentinel password file", []string{"-redis-sentinel", "m@127.0.0.1:1"}, map[string]string{"TIDINGS_REDIS_SENTINEL_PASSWORD_FILE": empty},
			[]string{"-redis-sentinel-password-file", "TIDINGS_REDIS_SENTINEL_PASSWORD_FILE", "empty"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-addr", "127.0.0.1:0"}, tc.args...)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, args, envOf(tc.env), &stdout)
			if code := exitCode(err, &stderr); code != 2 {
				t.Fatalf("args %q env %v: exit code %d (err %v), want 2", args, tc.env, code, err)
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "broker: invalid value for flag ") {
				t.Errorf("stderr is %q, want one line about an invalid flag", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not mention %q", line, w)
				}
			}
			if strings.Contains(line+stdout.String(), "pw-secret") {
				t.Errorf("the password shows: stderr %q, stdout %q", line, stdout.String())
			}
		})
	}
}

// TestRedisAuthFiles: the password files (a final newline dropped) and
// the TLS files, from flags or the environment, become what the store is
// given.
func TestRedisAuthFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, dir)
	certFile, keyFile := ca.Issue("client")
	passFile, sentinelFile := filepath.Join(dir, "password"), filepath.Join(dir, "sentinel-password")
	for name, body := range map[string]string{passFile: "from-file\n", sentinelFile: "sentinel-from-file\r\n"} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, c config) {
		t.Helper()
		a := c.redisAuth
		if a.Password != "from-file" || a.SentinelPassword != "sentinel-from-file" || a.Username != "alice" || a.SentinelUsername != "sentry" {
			t.Errorf("auth %q:%q, sentinel %q:%q; want alice:from-file and sentry:sentinel-from-file",
				a.Username, a.Password, a.SentinelUsername, a.SentinelPassword)
		}
		if a.TLS == nil || a.TLS.RootCAs == nil || a.TLS.GetClientCertificate == nil || a.TLS.ServerName != "redis.internal" || a.TLS.InsecureSkipVerify {
			t.Fatalf("TLS %+v, want the CA, the client certificate and the server name", a.TLS)
		}
		cert, err := a.TLS.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil || cert.Leaf == nil || cert.Leaf.Subject.CommonName != "client" {
			t.Errorf("client certificate %v, %v; want the one of %s", cert, err, certFile)
		}
	}
	t.Run("flags", func(t *testing.T) {
		t.Parallel()
		c, err := parseConfig([]string{"-redis-sentinel", "m@127.0.0.1:1",
			"-redis-username", "alice", "-redis-password-file", passFile,
			"-redis-sentinel-username", "sentry", "-redis-sentinel-password-file", sentinelFile,
			"-redis-tls", "-redis-tls-ca", ca.CertFile, "-redis-tls-cert", certFile, "-redis-tls-key", keyFile,
			"-redis-tls-server-name", "redis.internal"}, noEnv, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
	t.Run("environment", func(t *testing.T) {
		t.Parallel()
		c, err := parseConfig(nil, envOf(map[string]string{
			"TIDINGS_REDIS_SENTINEL":               "m@127.0.0.1:1",
			"TIDINGS_REDIS_USERNAME":               "alice",
			"TIDINGS_REDIS_PASSWORD_FILE":          passFile,
			"TIDINGS_REDIS_SENTINEL_USERNAME":      "sentry",
			"TIDINGS_REDIS_SENTINEL_PASSWORD_FILE": sentinelFile,
			"TIDINGS_REDIS_TLS":                    "true",
			"TIDINGS_REDIS_TLS_CA":                 ca.CertFile,
			"TIDINGS_REDIS_TLS_CERT":               certFile,
			"TIDINGS_REDIS_TLS_KEY":                keyFile,
			"TIDINGS_REDIS_TLS_SERVER_NAME":        "redis.internal",
		}), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		check(t, c)
		for _, name := range []string{"redis-password-file", "redis-tls-ca", "redis-tls-cert", "redis-tls-key"} {
			if c.fromEnv[name] != envName(name) {
				t.Errorf("-%s not recorded as set from %s", name, envName(name))
			}
		}
	})
	// A rediss:// URL turns TLS on: the TLS flags need no -redis-tls then.
	// A URL's username goes with a password from a flag.
	t.Run("rediss URL", func(t *testing.T) {
		t.Parallel()
		c, err := parseConfig([]string{"-redis", "rediss://alice@127.0.0.1:1", "-redis-password-file", passFile, "-redis-tls-ca", ca.CertFile}, noEnv, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if c.redisAuth.TLS == nil || c.redisAuth.TLS.RootCAs == nil || c.redisAuth.Password != "from-file" || c.redisAuth.Username != "" {
			t.Errorf("auth %+v, want the CA and the password from the file, the username left to the URL", c.redisAuth)
		}
	})
	// No TLS flag: the store is given no TLS configuration (a rediss://
	// URL alone is its business).
	t.Run("no TLS flags", func(t *testing.T) {
		t.Parallel()
		c, err := parseConfig([]string{"-redis", "rediss://127.0.0.1:1"}, noEnv, &bytes.Buffer{})
		if err != nil || c.redisAuth.TLS != nil {
			t.Errorf("TLS %+v (%v), want none", c.redisAuth.TLS, err)
		}
	})
}
